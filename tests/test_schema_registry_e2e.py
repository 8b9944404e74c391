"""Confluent-framed records through the real stack: a producer with confluent-kafka's SerializingProducer and
AvroSerializer, against the stack's schema registry simulator (where `pushpipe up` registered pushpipe's schemas),
binds a device and sends a push to its pin; fan-out and dispatch read both values by their schema ids and the APNs
simulator accepts the push. A framed value whose id the registry does not have becomes a dead letter with the reason."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, SerializingProducer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.schemas import codec, keys

pytestmark = pytest.mark.stack
UNKNOWN_ID = 2**31 - 1  # far above any id the registry gives


def to_avro(settings: Settings, record: str) -> AvroSerializer:
    """The README's serializer: the schema `pushpipe up` registered, found by lookup, nothing registered here."""
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    return AvroSerializer(client, codec.schema_text(record), conf={"auto.register.schemas": False})


def framed_producer(settings: Settings, record: str) -> SerializingProducer:
    return SerializingProducer({"bootstrap.servers": settings.kafka_bootstrap, "key.serializer": StringSerializer("utf_8"),
                                "value.serializer": to_avro(settings, record), "acks": "all"})


def test_confluent_framed_device_events_and_push_requests_are_delivered(pipeline: Settings, run_id: str) -> None:
    app, pin, token = f"sr-{run_id}", f"{run_id}-u1", run_id.ljust(64, "b")
    request = push_request(app, [pin], "Order shipped", "Arriving today")
    framed = to_avro(pipeline, "PushRequest")(request, SerializationContext(pipeline.topics.requests, MessageField.VALUE))
    registered = SchemaRegistryClient({"url": pipeline.schema_registry_url}).lookup_schema(
        f"{pipeline.topics.requests}-value", Schema(codec.schema_text("PushRequest"), "AVRO"))  # the id of pushpipe's schema
    assert framed is not None and framed[:5] == b"\x00" + registered.schema_id.to_bytes(4, "big")

    devices = framed_producer(pipeline, "DeviceEvent")
    devices.produce(pipeline.topics.device_events, key=keys.device_key(app, token), value=device_event(app, pin, token))
    assert devices.flush(30) == 0
    observe.wait_fanout_read(pipeline, timeout_s=90)
    requests = framed_producer(pipeline, "PushRequest")
    requests.produce(pipeline.topics.requests, key=request["msg_id"], value=request)
    assert requests.flush(30) == 0

    observe.wait_for(lambda: observe.simulator_accepted(pipeline, run_id)["count"] >= 1, 180,
                     "the APNs simulator to accept the Confluent-framed push")
    time.sleep(2)  # a second send would have arrived by now
    assert observe.simulator_accepted(pipeline, run_id)["tokens"] == [token]


def test_a_framed_value_with_an_unknown_schema_id_is_a_dead_letter_with_the_reason(pipeline: Settings, producer: PushProducer,
                                                                                  dlq_consumer: Consumer, run_id: str) -> None:
    request = push_request(f"sr-{run_id}", [f"{run_id}-u1"], "t", "b")
    body = codec.encode("PushRequest", request)[10:]  # the Avro body without the single-object header
    framed = b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + body
    producer.raw(pipeline.topics.requests, request["msg_id"], framed)
    producer.flush()
    letter = observe.wait_for(lambda: _letter_of(dlq_consumer, framed), 120, "the dead letter of the unknown schema id")
    assert letter["error"] == "unknown_schema_id" and f"schema id {UNKNOWN_ID}" in letter["reason"]
    assert letter["job"] == "fanout" and letter["source_topic"] == pipeline.topics.requests


def _letter_of(consumer: Consumer, payload: bytes) -> dict | None:
    """The dead letter carrying `payload`, among what push.dlq has next (read from its start)."""
    for _ in range(200):
        message = consumer.poll(0.5)
        if message is None:
            return None
        if message.error():
            continue
        letter = codec.decode("DeadLetter", message.value())
        if letter["payload"] == payload:
            return letter
    return None
