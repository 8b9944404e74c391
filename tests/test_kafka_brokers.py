"""Three real Kafka brokers (KRaft), started by infra/kafka.py beside the stack on ports of their own: topics keep 3
replicas with min.insync.replicas 2, and an idempotent acks=all producer loses and duplicates nothing when one
broker is killed with SIGKILL mid-stream; the supervisor's restart brings the broker back."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import process
from pushpipe.infra.kafka import Kafka, ensure_topics, nodes

pytestmark = [pytest.mark.stack, pytest.mark.beside_stack]
FIRST_PORT = 29792  # brokers on 29792, 29794, 29796; their controllers one port above each


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("three-brokers")
    (home / "cache").symlink_to(load().cache_dir)  # Kafka's jars, resolved once
    settings = Settings(home=home, kafka_bootstrap=f"127.0.0.1:{FIRST_PORT}", kafka_brokers=3, kafka_partitions=2)
    kafka = Kafka()
    try:
        kafka.start(settings)
        ensure_topics(settings)
        yield settings
    finally:
        kafka.stop(settings)


def test_three_brokers_replicate_every_topic_three_times_with_two_in_sync(brokers: Settings) -> None:
    assert [n.port for n in nodes(brokers)] == [FIRST_PORT, FIRST_PORT + 2, FIRST_PORT + 4]
    health = Kafka().health(brokers)
    assert health.ok and health.detail.startswith("3 broker(s)") and "min.insync 2" in health.detail, health.detail
    admin = AdminClient({"bootstrap.servers": brokers.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name in brokers.topics.all():
        assert all(len(p.replicas) == 3 for p in topics[name].partitions.values()), name
    (described,) = admin.describe_configs([ConfigResource("topic", brokers.topics.requests)]).values()
    assert described.result()["min.insync.replicas"].value == "2"


def test_an_acknowledged_record_survives_a_broker_killed_mid_stream(brokers: Settings) -> None:
    topic, run, total = brokers.topics.requests, uuid.uuid4().hex[:8], 3000
    producer = Producer({"bootstrap.servers": brokers.kafka_bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked: list[bytes] = []
    failed: list[str] = []

    def delivered(err: object, msg: object) -> None:
        (failed.append(str(err)) if err else acked.append(msg.value()))  # type: ignore[attr-defined]

    def produce() -> None:
        for n in range(total):
            producer.produce(topic, f"{run}-{n}".encode(), key=str(n).encode(), on_delivery=delivered)
            producer.poll(0)
            time.sleep(0.002)
        producer.flush(60)

    writer = threading.Thread(target=produce)
    writer.start()
    observe.wait_for(lambda: len(acked) >= total // 3, 30, "a third of the records acknowledged")
    victim = nodes(brokers)[1]
    os.kill(process.read_pid(brokers, victim.process_name) or 0, signal.SIGKILL)
    writer.join(90)
    assert not failed and len(acked) == total, (len(acked), failed[:3])
    assert Kafka().problem(brokers) is not None  # the supervisor sees the dead broker ...

    read = read_all(brokers, topic, run, total)
    assert sorted(read) == sorted(f"{run}-{n}".encode() for n in range(total)), "every acknowledged record, once"

    Kafka().restart(brokers)  # ... and its restart brings it back, the other two serving meanwhile
    assert Kafka().problem(brokers) is None and Kafka().health(brokers).ok


def read_all(settings: Settings, topic: str, run: str, total: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"read-{run}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    read: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(read) < total:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and (msg.value() or b"").startswith(run.encode()):
                read.append(msg.value() or b"")
        deadline = time.monotonic() + 2  # and nothing more: no duplicate
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and (msg.value() or b"").startswith(run.encode()):
                read.append(msg.value() or b"")
    finally:
        consumer.close()
    return read
