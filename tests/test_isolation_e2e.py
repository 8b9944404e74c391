"""Apps isolated and no poison pill, through the real stack (issue: nothing lost, nothing crossed).

- two apps sending the same msg id are both delivered and counted once each;
- ids and pins with separators, control characters or too many bytes are refused with a reason or kept
  inside their app, and one app's request naming another app's pins or tokens never reaches them;
- records at and around Kafka's size limit on every topic a job reads are dead-lettered with a bounded
  excerpt, and tombstones never stop a job (tests/test_outcomes_e2e.py checks what becomes of them), while good
  traffic keeps flowing;
- one request to 100,000 mostly unknown pins does not hold back other apps' counts.

Every test takes the `pipeline` fixture: infra/ starts the real Kafka broker, the three Flink jobs,
Elasticsearch, ClickHouse and the vendor simulator; each test produces to Kafka and reads what the jobs
wrote (push.dlq, ClickHouse rows, Elasticsearch documents, the simulator's accepted pushes)."""
from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.schemas import codec, keys
from pushpipe.sinks import clickhouse, elastic

pytestmark = pytest.mark.stack
BROKER_RECORD_LIMIT = 1_048_588  # Kafka's message.max.bytes default, which the embedded broker keeps


def tok(run_id: str, n: int) -> str:
    return f"{run_id}{n:05x}".ljust(64, "a")


def registered(producer: PushProducer, settings: Settings, *events: dict) -> None:
    for event in events:
        producer.device_event(event)
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=90)


def sent(producer: PushProducer, *requests: dict) -> None:
    for request in requests:
        producer.request(request)
    producer.flush()


def counted(settings: Settings, app: str, column: str = "accepted") -> int:
    ch = clickhouse.connect(settings, create=False)
    try:
        rows = ch.rows(f"SELECT sum({column}) AS n FROM {settings.clickhouse_database}.dispatch_results FINAL WHERE app_id = '{app}'")
        return int(rows[0]["n"] or 0)
    finally:
        ch.close()


def message_counts(settings: Settings, app: str, msg_id: str) -> dict:
    es = elastic.connect(settings)
    found = es.options(ignore_status=404).get(index=settings.es_index, id=keys.message_doc_id(app, msg_id))
    return found["_source"]["counts"] if found.get("found") else {}


def dead_letters(settings: Settings, wanted: int, match, timeout_s: float = 90) -> list[dict]:
    """The dead letters for which match(letter) holds, from the start of push.dlq, once `wanted` are there."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-dlq-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topics.dlq])
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < wanted and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            assert len(message.value()) < 64 * 1024, "a dead letter is small whatever it carries"
            letter = codec.decode("DeadLetter", message.value())
            if match(letter):
                found.append(letter)
    finally:
        consumer.close()
    return found


def test_the_same_msg_id_in_two_apps_is_delivered_and_counted_once_each(pipeline: Settings, producer: PushProducer,
                                                                        admin: SimulatorAdmin, run_id: str) -> None:
    one, two = f"iso1-{run_id}", f"iso2-{run_id}"
    registered(producer, pipeline, device_event(one, "u", tok(run_id, 1)), device_event(two, "u", tok(run_id, 2)))
    shared = uuid.uuid4().hex
    sent(producer, push_request(one, ["u"], "t", "b", msg_id=shared), push_request(two, ["u"], "t", "b", msg_id=shared))
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] == 2, 60, "both apps' pushes")
    observe.wait_for(lambda: counted(pipeline, one) == 1 and counted(pipeline, two) == 1, 60, "one accepted in each app")
    observe.wait_for(lambda: message_counts(pipeline, one, shared) == {"accepted": 1}
                     and message_counts(pipeline, two, shared) == {"accepted": 1}, 60, "a message document in each app")
    time.sleep(2)
    assert Counter(admin.accepted(run_id)["tokens"]) == Counter({tok(run_id, 1): 1, tok(run_id, 2): 1})
    assert counted(pipeline, one, "suppressed") == 0 and counted(pipeline, two, "suppressed") == 0, "neither is a duplicate"


def test_separators_control_characters_and_long_ids_never_cross_apps(pipeline: Settings, producer: PushProducer,
                                                                      admin: SimulatorAdmin, run_id: str) -> None:
    app, victim = f"sep-{run_id}", f"sep-{run_id}-victim"
    registered(producer, pipeline,
               device_event(victim, "y", tok(run_id, 1)),  # reached by app "<app>|" + pin "y" if keys were "app|pin"
               device_event(app, "x|y", tok(run_id, 2)),  # a pin holding the separator stays this app's pin
               device_event(f"{app}|x", "y", tok(run_id, 3)),  # refused: app ids hold no separator
               device_event(app, "bell\x07", tok(run_id, 4)),  # refused: control character
               device_event(app, "p" * 129, tok(run_id, 5)))  # refused: too long
    crossing = push_request(f"{app}|x", ["y"], "cross", "b")
    foreign = push_request(app, ["y"], "foreign pin", "b")  # victim's pin name, from another app
    tokens = push_request(app, [], "foreign token", "b", target="tokens", tokens=[tok(run_id, 1)])
    own = push_request(app, ["x|y"], "own", "b")
    control = push_request(app, ["ok", "bad\npin"], "t", "b")
    sent(producer, crossing, foreign, tokens, own, control)
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] >= 1, 60, "the app's own push")
    letters = dead_letters(pipeline, 5, lambda d: run_id in (d["app_id"] or "") and d["error"] in ("invalid_request", "invalid_device_event"))
    reasons = sorted(d["reason"] for d in letters)
    assert any("app_id" in r and "|" in r for r in reasons if "must be 1-64" in r), reasons
    assert sum("U+0007" in r for r in reasons) == 1 and sum("U+000A" in r for r in reasons) == 1, reasons
    assert sum("129 bytes" in r for r in reasons) == 1, reasons
    time.sleep(5)  # anything misrouted would have arrived by now
    assert Counter(admin.accepted(run_id)["tokens"]) == Counter({tok(run_id, 2): 1}), "only the app's own device"
    es = elastic.connect(pipeline)
    foreign_outcomes = observe.wait_for(lambda: elastic.deliveries(es, pipeline, app, foreign["msg_id"]), 60, "the foreign pin's outcome")
    assert [d["code"] for d in foreign_outcomes.values()] == ["no_devices"]
    token_outcomes = observe.wait_for(lambda: elastic.deliveries(es, pipeline, app, tokens["msg_id"]), 60, "the foreign token's outcome")
    assert [d["reason"] for d in token_outcomes.values()] == ["unknown_token"]


def near_limit_values(topic: str, run_id: str) -> Iterator[tuple[str, bytes | None]]:
    """Values at and around the record limit that no job can take, and a tombstone."""
    marker = f"poison-{run_id}-{topic}".encode()
    unknown_schema = codec.MAGIC + b"\x00" * 8  # Avro single-object framing with a fingerprint no schema has
    for size in (BROKER_RECORD_LIMIT - 4096, BROKER_RECORD_LIMIT - 1024, 1_000_000):
        yield "unknown_schema", unknown_schema + marker + b"x" * (size - len(unknown_schema) - len(marker))
    yield "tombstone", None


def test_records_at_the_size_limit_and_tombstones_on_every_input_topic_never_stop_the_pipeline(
        pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app = f"poison-{run_id}"
    registered(producer, pipeline, device_event(app, "u", tok(run_id, 1)))
    raw = Producer({"bootstrap.servers": pipeline.kafka_bootstrap, "message.max.bytes": BROKER_RECORD_LIMIT,
                    "compression.type": "none"})
    topics = pipeline.topics
    inputs = [topics.requests, topics.device_events, topics.preferences, topics.device_feedback, *topics.lanes,
              topics.retry, topics.results]
    sizes: dict[str, int] = {}
    for topic in inputs:
        for _, value in near_limit_values(topic, run_id):
            raw.produce(topic, value=value, key=f"{app}|poison".encode())
            if value is not None:
                sizes[hashlib.sha256(value).hexdigest()] = len(value)
    # the largest valid records upstream may send, each refused for what it holds
    huge_request = push_request(app, [f"p{i:07d}" for i in range(keys.MAX_PINS + 1)], "t", "b")
    raw.produce(topics.requests, value=codec.encode("PushRequest", huge_request), key=b"huge")
    raw.produce(topics.device_events, value=codec.encode("DeviceEvent", device_event(app, "u", "t" * 900_000)), key=b"huge")
    assert raw.flush(60) == 0
    good = push_request(app, ["u"], "still flowing", "b")
    sent(producer, good)
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] == 1, 120, "a good push after the poison")
    observe.wait_for(lambda: message_counts(pipeline, app, good["msg_id"]) == {"accepted": 1}, 120,
                     "the good push counted: the analytics writer did not stall on the poison")
    letters = dead_letters(pipeline, len(sizes), lambda d: d["payload_sha256"] in sizes, timeout_s=120)
    assert {d["payload_sha256"] for d in letters} == set(sizes), "every oversize record is dead-lettered"
    for letter in letters:
        assert letter["payload_truncated"] and letter["payload_size"] == sizes[letter["payload_sha256"]]
        assert len(letter["payload"]) <= 4096 and letter["error"] == "unknown_schema"
    refused = dead_letters(pipeline, 2, lambda d: d["app_id"] == app and d["error"] in ("invalid_request", "invalid_device_event"))
    assert sorted(d["error"] for d in refused) == ["invalid_device_event", "invalid_request"]
    assert any(f"{keys.MAX_PINS + 1} pins" in d["reason"] for d in refused)


def counted_lag(settings: Settings, admin: SimulatorAdmin, producer: PushProducer, app: str, prefix: str, pins: int) -> float:
    """Seconds from sending one push to each of the app's pins until ClickHouse and Elasticsearch count them all."""
    started = time.monotonic()
    pushes = [push_request(app, [f"u{i}"], "t", "b") for i in range(pins)]
    sent(producer, *pushes)
    observe.wait_for(lambda: admin.accepted(prefix)["unique"] >= pins, 180, f"{app}'s pushes")
    observe.wait_for(lambda: counted(settings, app) == pins, 120, f"{app}'s counts in ClickHouse")
    observe.wait_for(lambda: all(message_counts(settings, app, p["msg_id"]) == {"accepted": 1} for p in pushes), 60,
                     f"{app}'s messages in Elasticsearch")
    return time.monotonic() - started


def test_a_request_to_100000_unknown_pins_does_not_hold_back_other_apps(pipeline: Settings, producer: PushProducer,
                                                                         admin: SimulatorAdmin, run_id: str) -> None:
    big, usual, beside = f"wide-{run_id}", f"usual-{run_id}", f"beside-{run_id}"
    known, pins = 10, 20
    registered(producer, pipeline, *[device_event(big, f"k{i}", tok(run_id, i)) for i in range(known)],
               *[device_event(usual, f"u{i}", tok(run_id, 0x1000 + i)) for i in range(pins)],
               *[device_event(beside, f"u{i}", tok(run_id, 0x2000 + i)) for i in range(pins)])
    usual_lag = counted_lag(pipeline, admin, producer, usual, f"{run_id}010", pins)
    everyone = [f"k{i}" for i in range(known)] + [f"n{i:05d}" for i in range(100_000 - known)]  # ~700 KB: fits a Kafka record
    wide = push_request(big, everyone, "t", "b")
    sent(producer, wide)
    time.sleep(1)
    lag = counted_lag(pipeline, admin, producer, beside, f"{run_id}020", pins)
    print(f"\nanother app's {pins} pushes counted {lag:.1f} s after they were sent beside a 100,000-pin request,"
          f" {usual_lag:.1f} s without it")
    assert lag <= 2 * usual_lag + 10, "normal traffic is counted within its usual lag"
    observe.wait_for(lambda: message_counts(pipeline, big, wide["msg_id"]) == {"accepted": known, "suppressed": 100_000 - known},
                     240, "every pin of the wide request has its outcome")
    assert counted(pipeline, big, "suppressed") == 100_000 - known
    es = elastic.connect(pipeline)
    unknown = [d for d in elastic.deliveries(es, pipeline, big, wide["msg_id"]).values() if d["code"] == "no_devices"]
    assert sum(d["count"] for d in unknown) == 100_000 - known and len(unknown) <= 1000, "the unknown pins are counted, not listed"
