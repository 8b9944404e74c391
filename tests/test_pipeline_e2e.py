"""End to end through the real stack: devices and requests produced with confluent-kafka,
expanded and batched by the fan-out job, sent by the dispatch job to the APNs simulator over
HTTP/2, counted in ClickHouse and documented in Elasticsearch by the analytics job."""
from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from confluent_kafka import Consumer

import stories
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.schemas import codec, keys
from pushpipe.sinks import clickhouse, elastic

pytestmark = pytest.mark.stack
USERS = 40
DEVICES_PER_USER = 2


def token(run_id: str, user: int, device: int) -> str:
    return f"{run_id}{user:04x}{device:02x}".ljust(64, "a")


def register(producer: PushProducer, settings: Settings, app: str, run_id: str) -> None:
    for u in range(USERS):
        for d in range(DEVICES_PER_USER):
            producer.device_event(device_event(app, f"{run_id}-u{u}", token(run_id, u, d)))
    # a device switched off, a device unbound, and a dead token the simulator will reject
    producer.device_event(device_event(app, f"{run_id}-off", token(run_id, 9000, 0)))
    producer.device_event(device_event(app, f"{run_id}-off", token(run_id, 9000, 0), kind="switch_off"))
    producer.device_event(device_event(app, f"{run_id}-gone", token(run_id, 9001, 0)))
    producer.device_event(device_event(app, f"{run_id}-gone", token(run_id, 9001, 0), kind="unbind"))
    producer.device_event(device_event(app, f"{run_id}-dead", token(run_id, 9002, 0)))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=90)


def dead_letters(consumer: Consumer, payload: bytes, msg_id: str, timeout_s: float = 60) -> dict[str, dict]:
    """The dead letters of this test, found by payload or msg id, read from the start of push.dlq."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < 2 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        letter = codec.decode("DeadLetter", message.value())
        if letter["payload"] == payload:
            found["garbage"] = letter
        elif letter["msg_id"] == msg_id:
            found["refused"] = letter
    return found


def test_pushes_flow_end_to_end(pipeline: Settings, producer: PushProducer, dlq_consumer: Consumer, run_id: str) -> None:
    app = f"e2e-{run_id}"
    dead = token(run_id, 9002, 0)
    httpx.post(f"{pipeline.simulator_admin_url}/config", json={"unregistered_tokens": [dead]}, timeout=10).raise_for_status()
    register(producer, pipeline, app, run_id)

    garbage = f"not avro {run_id}".encode()
    producer.raw(pipeline.topics.requests, "garbage", garbage)  # before the good ones: must not stop the job
    invalid = push_request(app, [], "t", "b", target="segment", segment={"color": "red"})
    producer.request(invalid)
    singles = [push_request(app, [f"{run_id}-u{u}"], "Order shipped", f"order {u}") for u in range(USERS)]
    group = push_request(app, [f"{run_id}-u{u}" for u in range(USERS)] + [f"{run_id}-off", f"{run_id}-gone", f"{run_id}-dead"],
                         "Flash sale", "20% off", category="marketing", priority="low")
    nobody = push_request(app, [f"{run_id}-nobody"], "Hello", "nobody is there")
    for request in [*singles, group, nobody]:
        producer.request(request)
    producer.flush()

    expected = Counter({token(run_id, u, d): 2 for u in range(USERS) for d in range(DEVICES_PER_USER)})
    observe.wait_for(lambda: observe.simulator_accepted(pipeline, run_id)["count"] >= sum(expected.values()),
                     180, "the APNs simulator to accept every notification")
    time.sleep(3)  # anything extra would have arrived by now
    accepted = observe.simulator_accepted(pipeline, run_id)
    assert Counter(accepted["tokens"]) == expected, "exactly the expected tokens, each exactly twice"

    ch = clickhouse.connect(pipeline, create=False)
    db = pipeline.clickhouse_database
    totals_sql = (f"SELECT uniqExact(msg_id) AS messages, sum(requested) AS requested, sum(sent) AS sent, "
                  f"sum(accepted) AS accepted, sum(invalid_token) AS invalid, sum(suppressed) AS suppressed, "
                  f"sum(failed) AS failed FROM {db}.dispatch_results FINAL WHERE app_id = '{app}'")
    # requested: every token with an outcome, the dead one and the switched-off one among them (its own outcome)
    want = {"messages": USERS + 2, "requested": 2 * USERS * DEVICES_PER_USER + 2, "sent": 2 * USERS * DEVICES_PER_USER + 1,
            "accepted": 2 * USERS * DEVICES_PER_USER, "invalid": 1, "failed": 1,
            "suppressed": 3}  # the pins with no device, with the device switched off and with it unbound
    totals = observe.wait_for(lambda: _matches(ch.rows(totals_sql)[0], want), 60, f"ClickHouse totals {want}")
    assert totals == want
    per_minute = ch.rows(f"SELECT sum(accepted) AS accepted FROM {db}.delivery_per_minute WHERE app_id = '{app}'")
    assert int(per_minute[0]["accepted"]) == want["accepted"]

    es = elastic.connect(pipeline)
    doc, delivered = observe.wait_for(lambda: _doc_with(es, pipeline, group, USERS * DEVICES_PER_USER + 3), 60,
                                      "the group message and its deliveries")
    assert doc["counts"] == {"accepted": USERS * DEVICES_PER_USER, "invalid_token": 1, "suppressed": 2}
    assert {t for t, d in delivered.items() if d["outcome"] == "invalid_token"} == {dead}
    assert doc["vendors"] == ["apns"] and doc["category"] == "marketing"
    _, nobody_delivered = observe.wait_for(lambda: _doc_with(es, pipeline, nobody, 1), 60, "the no-device message")
    assert nobody_delivered[f"pin:{run_id}-nobody"]["code"] == "no_devices"
    story = observe.wait_for(lambda: _at_least(stories.of_pin(pipeline, app, f"{run_id}-u0"), 2 * DEVICES_PER_USER), 60,
                             "the story of one pin")
    assert {d["msg_id"] for d in story} == {singles[0]["msg_id"], group["msg_id"]} and len(story) == 2 * DEVICES_PER_USER
    assert [d["completed_at"] for d in story] == sorted((d["completed_at"] for d in story), reverse=True)

    letters = dead_letters(dlq_consumer, garbage, invalid["msg_id"])
    assert letters["garbage"]["error"] == "malformed_avro" and letters["garbage"]["job"] == "fanout"
    assert letters["refused"]["error"] == "invalid_request" and "color" in letters["refused"]["reason"]


def _matches(row: dict, want: dict) -> dict | None:
    row = {k: int(v) for k, v in row.items()}
    return row if row == want else None


def _at_least(found: list, count: int) -> list | None:
    return found if len(found) >= count else None


def _doc_with(es, settings: Settings, request: dict, deliveries: int) -> tuple[dict, dict[str, dict]] | None:
    """The message document and its deliveries, once it has exactly `deliveries` of them.

    Deliveries first: each result updates its message before its deliveries are written, and a get is realtime.
    """
    delivered = stories.of_message(settings, request["app_id"], request["msg_id"])
    if len(delivered) != deliveries:
        return None
    found = es.options(ignore_status=404).get(index=settings.es_index, id=keys.message_doc_id(request["app_id"], request["msg_id"]))
    return (found["_source"], delivered) if found.get("found") else None
