"""Producing PushRequests, DeviceEvents and PreferenceEvents with confluent-kafka: the reference upstream producer.

Any language can do the same: encode the record with the .avsc from schemas/ as Avro
single-object encoding (C3 01 + CRC-64-AVRO fingerprint + Avro binary) and produce it.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Producer

from pushpipe.config import Settings
from pushpipe.schemas import codec, keys


def now_ms() -> int:
    return int(time.time() * 1000)


def device_event(app_id: str, pin: str, token: str, vendor: str = "apns", kind: str = "bind", **fields: Any) -> dict[str, Any]:
    platform = "ios" if vendor == "apns" else "android"
    return codec.new_record("DeviceEvent", app_id=app_id, pin=pin, token=token, vendor=vendor, kind=kind,
                            platform=platform, ts=now_ms(), **fields)


def preference_event(app_id: str, pin: str, kind: str, **fields: Any) -> dict[str, Any]:
    return codec.new_record("PreferenceEvent", app_id=app_id, pin=pin, kind=kind, ts=now_ms(), **fields)


def push_request(app_id: str, pins: list[str], title: str, body: str, **fields: Any) -> dict[str, Any]:
    return codec.new_record(
        "PushRequest",
        msg_id=fields.pop("msg_id", uuid.uuid4().hex),
        app_id=app_id,
        target=fields.pop("target", "pin" if len(pins) == 1 else "pins"),
        pins=pins,
        notification=codec.new_record("Notification", title=title, body=body, **fields.pop("notification", {})),
        created_at=now_ms(),
        **fields,
    )


class PushProducer:
    """Encodes with the one codec and produces to the pipeline's topics."""

    def __init__(self, settings: Settings) -> None:
        self.topics = settings.topics
        self._producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "linger.ms": 5,
            "compression.type": "lz4",
            "enable.idempotence": True,
        })

    def request(self, record: dict[str, Any]) -> None:
        self._produce(self.topics.requests, record["msg_id"], codec.encode("PushRequest", record))

    def device_event(self, record: dict[str, Any]) -> None:
        self._produce(self.topics.device_events, keys.device_key(record["app_id"], record["token"]), codec.encode("DeviceEvent", record))

    def preference(self, record: dict[str, Any]) -> None:
        """A PreferenceEvent, keyed app_id|pin|<setting> (keys.preference_key): user.preferences is compacted,
        and compaction keeps the latest event per key, so each setting keeps its latest value."""
        self._produce(self.topics.preferences, keys.preference_key(record), codec.encode("PreferenceEvent", record))

    def raw(self, topic: str, key: str, value: bytes) -> None:
        self._produce(topic, key, value)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key.encode())
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise RuntimeError(f"{remaining} records were not delivered to Kafka within {timeout_s}s")
