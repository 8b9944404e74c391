"""Real Kafka and Elasticsearch, started through infra's Service classes (left running)."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from elasticsearch import Elasticsearch as EsClient

from pushpipe.config import Settings, Topics, load
from pushpipe.infra import process
from pushpipe.infra.elasticsearch import Elasticsearch
from pushpipe.infra.kafka import DLQ_RETENTION_MS, RETENTION_MS, Kafka, ensure_topics
from pushpipe.producer import PushProducer, preference_event

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load()


@pytest.fixture(scope="module")
def kafka(settings: Settings) -> Kafka:
    service = Kafka()
    service.start(settings)
    ensure_topics(settings)
    return service


@pytest.fixture(scope="module")
def elasticsearch(settings: Settings) -> Elasticsearch:
    service = Elasticsearch()
    service.start(settings)
    return service


@pytest.mark.parametrize("service_fixture", ["kafka", "elasticsearch"])
def test_second_start_is_a_no_op(request: pytest.FixtureRequest, settings: Settings, service_fixture: str) -> None:
    service = request.getfixturevalue(service_fixture)
    pid = process.read_pid(settings, service.name)
    began = time.monotonic()
    service.start(settings)
    assert time.monotonic() - began < 5
    assert process.read_pid(settings, service.name) == pid
    assert service.health(settings).ok


def test_topics_exist_with_partitions_and_configs(kafka: Kafka, settings: Settings) -> None:
    ensure_topics(settings)  # idempotent
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    t = settings.topics
    for name in t.all():
        assert name in topics
        assert len(topics[name].partitions) == settings.kafka_partitions

    resources = [ConfigResource("topic", t.device_events), ConfigResource("topic", t.preferences), ConfigResource("topic", t.dlq)]
    described = {res.name: future.result() for res, future in admin.describe_configs(resources).items()}
    assert described[t.device_events]["cleanup.policy"].value == "compact"
    assert described[t.preferences]["cleanup.policy"].value == "compact"
    assert described[t.dlq]["retention.ms"].value == str(DLQ_RETENTION_MS)


def test_an_installation_with_expiring_preferences_is_fixed_in_place(kafka: Kafka, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """user.preferences from before it was compacted (7-day delete): ensure_topics compacts it and says so."""
    topic = f"user.preferences.old-{uuid.uuid4().hex[:8]}"
    old = settings.model_copy(update={"topics": Topics(preferences=topic)})
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    old_config = {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS)}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=old_config)])[topic].result()
    try:
        ensure_topics(old)
        config = admin.describe_configs([ConfigResource("topic", topic)])
        entries = next(iter(config.values())).result()
        assert entries["cleanup.policy"].value == "compact"
        assert entries["retention.ms"].source != 1, "the 7-day retention is no longer set on the topic"
        said = capsys.readouterr().err
        assert f"topic {topic}: cleanup.policy delete -> compact" in said
        ensure_topics(old)
        assert topic not in capsys.readouterr().err, "a fixed topic is left alone"
    finally:
        admin.delete_topics([topic])


def test_the_reference_producer_keys_preferences_by_app_pin_and_setting(kafka: Kafka, settings: Settings) -> None:
    """Compaction keeps the latest record per key: an unkeyed preference would be dropped, and one keyed by pin alone
    would be lost behind the pin's next change of another setting."""
    app, topic = f"prefs-{uuid.uuid4().hex[:8]}", settings.topics.preferences
    producer = PushProducer(settings)
    producer.preference(preference_event(app, "user-1", "opt_out", category="marketing"))
    producer.flush()
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-prefs-{app}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None and app.encode() in (msg.value() or b""):  # tombstones too
                assert msg.key() == f"{app}|user-1|category:marketing".encode()
                return
        pytest.fail(f"the preference of {app} was not consumed from {topic}")
    finally:
        consumer.close()


def test_produce_and_consume_one_message(kafka: Kafka, settings: Settings) -> None:
    """On a topic of its own: bytes that are not Avro never go into a topic a job reads."""
    key = uuid.uuid4().hex
    topic = f"test-infra-{key}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(topic, key=key, value=b"hello")
    assert producer.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"test-infra-{key}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None and msg.key() == key.encode():
                assert msg.value() == b"hello"
                return
        pytest.fail(f"message {key} not consumed from {topic}")
    finally:
        consumer.close()
        admin.delete_topics([topic])[topic].result(30)


def test_index_and_get_one_document(elasticsearch: Elasticsearch, settings: Settings) -> None:
    es = EsClient(settings.es_url)
    index = f"pushpipe-test-{uuid.uuid4().hex[:8]}"
    try:
        es.index(index=index, id="1", document={"status": "sent"}, refresh=True)
        assert es.get(index=index, id="1")["_source"] == {"status": "sent"}
        es.update(index=index, id="1", doc={"status": "delivered"}, refresh=True)
        assert es.search(index=index, query={"term": {"status": "delivered"}})["hits"]["total"]["value"] == 1
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from pushpipe.infra.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # ~1 in 64 random ids would start with "-"
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
