"""Receipts through the real stack: the vendor simulators post each vendor's receipt callbacks to the real
receipt gateway (started by `pushpipe up`), apps' SDK events come the same way, and the analytics job counts
them in ClickHouse (receipts, message_rates) and Elasticsearch (each message's counts). Forged and malformed
posts are refused with their reason and dead-lettered; the good receipts beside them still count, once."""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

import stories
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.demo import demo_token
from pushpipe.gateway import signing
from pushpipe.infra import process
from pushpipe.infra.jobs import FlinkJob
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.simulators import population
from pushpipe.simulators.common import SimConfig
from pushpipe.sinks import clickhouse
from test_isolation_e2e import dead_letters, message_counts, registered, sent

pytestmark = pytest.mark.stack
RECEIPT_VENDORS = ("xiaomi", "oppo", "vivo", "meizu", "hms", "honor")  # the vendors that post delivery receipts


def receipts(settings: Settings, app: str) -> dict[str, int]:
    ch = clickhouse.connect(settings, create=False)
    try:
        rows = ch.rows(f"SELECT kind, count() AS n FROM {settings.clickhouse_database}.receipts FINAL "
                       f"WHERE app_id = '{app}' GROUP BY kind")
        return {row["kind"]: int(row["n"]) for row in rows}
    finally:
        ch.close()


def sdk_post(settings: Settings, app: str, events: list[dict], key: str | None = None) -> httpx.Response:
    secret = signing.load_key(settings.receipt_key_file)
    return httpx.post(f"{settings.gateway_url}/v1/sdk/{app}/events", json={"events": events},
                      headers={"x-pushpipe-key": key if key is not None else signing.sdk_key(secret, app)}, timeout=30)


def test_every_receipt_vendor_and_the_sdk_are_counted_once(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"rcpt-{run_id}"
    devices = {vendor: demo_token(vendor, run_id, n) for n, vendor in enumerate(RECEIPT_VENDORS)}
    registered(producer, pipeline, *[device_event(app, f"u-{vendor}", token, vendor=vendor) for vendor, token in devices.items()])
    pushes = {vendor: push_request(app, [f"u-{vendor}"], "Order shipped", "Arriving today", category="transactional")
              for vendor in devices}
    sent(producer, *pushes.values())
    observe.wait_for(lambda: receipts(pipeline, app).get("delivered") == len(devices), 120,
                     "a delivery receipt from every vendor in ClickHouse")
    observe.wait_for(lambda: all(message_counts(pipeline, app, p["msg_id"]).get("delivered") == 1 for p in pushes.values()), 30,
                     "each message's delivery in Elasticsearch")  # written right after ClickHouse, in the same window

    now = int(time.time() * 1000)
    opened = [{"msg_id": pushes[v]["msg_id"], "token": devices[v], "kind": "opened", "ts": now} for v in ("hms", "xiaomi")]
    acked = {"msg_id": pushes["hms"]["msg_id"], "token": devices["hms"], "kind": "delivered", "ts": now}  # the vendor said so too
    bad = {"msg_id": "x", "token": "t", "kind": "liked", "ts": 1}
    answer = sdk_post(pipeline, app, [*opened, acked, bad])
    assert answer.status_code == 200 and answer.json()["accepted"] == 3 and answer.json()["refused"][0]["item"] == "events[3]"
    assert sdk_post(pipeline, app, opened).status_code == 200, "an SDK that sends its batch again"
    observe.wait_for(lambda: receipts(pipeline, app).get("opened") == 2 and receipts(pipeline, app).get("delivered") == len(devices) + 1,
                     60, "the two opens, counted once each, and the SDK's delivery ack")
    observe.wait_for(lambda: message_counts(pipeline, app, pushes["hms"]["msg_id"]).get("opened") == 1, 60, "the open in Elasticsearch")
    ch = clickhouse.connect(pipeline, create=False)
    try:
        rates = ch.rows(f"SELECT msg_id, accepted, delivered, opened, open_rate FROM {pipeline.clickhouse_database}.message_rates "
                        f"WHERE app_id = '{app}' ORDER BY msg_id")
        opens = ch.rows(f"SELECT toUnixTimestamp64Milli(ts) AS ts_ms, toUnixTimestamp64Milli(received_at) AS received_ms, "
                        f"day = toDate(ts) AS same_day FROM {pipeline.clickhouse_database}.receipts FINAL WHERE app_id = '{app}' AND kind = 'opened'")
    finally:
        ch.close()
    assert [int(o["ts_ms"]) for o in opens] == [now, now] and all(now <= int(o["received_ms"]) < now + 60_000 and o["same_day"] for o in opens)
    by_msg = {row["msg_id"]: row for row in rates}
    # one device each: the HMS device's delivery, acked by the vendor and by the SDK, is one delivered device
    assert [(int(by_msg[p["msg_id"]]["accepted"]), int(by_msg[p["msg_id"]]["delivered"])) for p in pushes.values()] == [(1, 1)] * len(pushes)
    assert float(by_msg[pushes["hms"]["msg_id"]]["open_rate"]) == 1.0 and float(by_msg[pushes["oppo"]["msg_id"]]["open_rate"]) == 0.0
    letters = dead_letters(pipeline, 1, lambda d: d["app_id"] == app and d["job"] == "gateway")
    assert letters[0]["error"] == "bad_item" and "events[3]" in letters[0]["reason"]


def test_forged_and_malformed_callbacks_are_refused_and_dead_lettered(pipeline: Settings, run_id: str) -> None:
    app = f"forged-{run_id}"
    key = signing.load_key(pipeline.receipt_key_file)
    genuine = signing.callback_url(pipeline.gateway_url, key, "xiaomi", app)
    forged = httpx.post(genuine.replace(f"/{app}/", f"/{app}x/"), data={"data": "{}"}, timeout=30)
    assert forged.status_code == 401 and forged.json()["error"] == "bad_signature"
    malformed = httpx.post(genuine, data={"nothing": "here"}, timeout=30)
    assert malformed.status_code == 400 and "'data'" in malformed.json()["reason"]
    stranger = sdk_post(pipeline, app, [], key="not-the-key")
    assert stranger.status_code == 401 and stranger.json()["error"] == "bad_key"
    letters = dead_letters(pipeline, 3, lambda d: d["job"] == "gateway" and d["app_id"] in (app, f"{app}x"))
    assert sorted(d["error"] for d in letters) == ["bad_key", "bad_signature", "malformed"]
    signature = genuine.rsplit("/", 1)[1]
    assert all(signature not in d["source_topic"] for d in letters), "a dead letter never shows a callback URL's signature"


def test_an_invalid_target_receipt_stops_the_token_being_targeted(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"dead-{run_id}"
    token, kept = demo_token("xiaomi", run_id, 1), demo_token("xiaomi", run_id, 2)
    registered(producer, pipeline, device_event(app, "u", token, vendor="xiaomi"), device_event(app, "u", kept, vendor="xiaomi"))
    key = signing.load_key(pipeline.receipt_key_file)
    doc = {"sc-1": {"param": "earlier-msg", "type": 16, "targets": token, "timestamp": int(time.time() * 1000)}}
    answer = httpx.post(signing.callback_url(pipeline.gateway_url, key, "xiaomi", app), data={"data": json.dumps(doc)}, timeout=30)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    feedback = pipeline.topics.device_feedback
    observe.wait_fanout_read(pipeline, feedback, timeout_s=90)
    time.sleep(2)  # the shard passes the news on to the pin through device.feedback once more
    observe.wait_fanout_read(pipeline, feedback, timeout_s=90)
    push = push_request(app, ["u"], "t", "b", category="transactional")
    sent(producer, push)
    observe.wait_for(lambda: message_counts(pipeline, app, push["msg_id"]).get("accepted") == 1, 90, "the push to the pin")
    assert receipts(pipeline, app) == {"invalid_target": 1}
    es_tokens = [d["token"] for d in deliveries_of(pipeline, app, push["msg_id"])]
    assert es_tokens == [kept], "only the live token is sent to"


def deliveries_of(settings: Settings, app: str, msg_id: str) -> list[dict]:
    return list(stories.of_message(settings, app, msg_id).values())


def test_a_population_delivers_and_opens_the_share_it_was_given(pipeline: Settings, producer: PushProducer, admin, run_id: str) -> None:
    app, n = f"crowd-{run_id}", 40
    tokens = [demo_token("xiaomi", run_id, i) for i in range(n)]
    registered(producer, pipeline, *[device_event(app, f"u{i}", t, vendor="xiaomi") for i, t in enumerate(tokens)])
    admin.configure(vendor="xiaomi", delivery_rate=0.5, open_rate=0.5, delivery_delay_ms=200, open_delay_ms=300)
    try:
        push = push_request(app, [f"u{i}" for i in range(n)], "Sale", "Today only", category="transactional")
        sent(producer, push)
        config = SimConfig(delivery_rate=0.5, open_rate=0.5)
        fates = [population.fate(config, push["msg_id"], t) for t in tokens]
        expected = {"delivered": sum(f.delivered for f in fates), "opened": sum(f.opened for f in fates)}
        assert 0 < expected["opened"] < expected["delivered"] < n
        observe.wait_for(lambda: receipts(pipeline, app) == expected, 120, f"the population's {expected}")
        counts = message_counts(pipeline, app, push["msg_id"])
        assert (counts["accepted"], counts["delivered"], counts["opened"]) == (n, expected["delivered"], expected["opened"])
    finally:
        admin.reset(records=False)


def test_a_killed_analytics_job_and_receipts_sent_again_are_counted_once(pipeline: Settings, producer: PushProducer,
                                                                         run_id: str) -> None:
    app, messages, tokens = f"replay-{run_id}", 5, 50
    devices = [demo_token("apns", run_id, t) for t in range(2 * tokens)]  # APNs: the apps' SDK acks are its only receipts
    registered(producer, pipeline, *[device_event(app, f"u{t}", token) for t, token in enumerate(devices)])
    pushes = [push_request(app, [f"u{t}" for t in range(2 * tokens)], "Order shipped", "Arriving today") for _ in range(messages)]
    sent(producer, *pushes)
    observe.wait_for(lambda: all(message_counts(pipeline, app, p["msg_id"]).get("accepted") == 2 * tokens for p in pushes), 120,
                     "every push accepted")

    def wave(first_token: int) -> list[dict]:
        return [{"msg_id": p["msg_id"], "token": devices[t], "kind": "delivered", "ts": int(time.time() * 1000)}
                for p in pushes for t in range(first_token, first_token + tokens)]

    def posted(events: list[dict]) -> None:
        for start in range(0, len(events), 100):
            assert sdk_post(pipeline, app, events[start:start + 100]).status_code == 200

    def es_delivered() -> list[int]:
        return [message_counts(pipeline, app, p["msg_id"]).get("delivered", 0) for p in pushes]

    posted(wave(0))
    observe.wait_for(lambda: receipts(pipeline, app).get("delivered") == messages * tokens, 60, "the first wave in ClickHouse")
    job = FlinkJob("analytics")
    leader = process.read_pid(pipeline, "job-analytics")
    os.kill(leader, signal.SIGKILL)
    posted(wave(tokens))  # while the job is down
    posted(wave(0))  # the first wave again, as a vendor that retries its callbacks
    observe.wait_for(lambda: process.read_pid(pipeline, "job-analytics") not in (None, leader) and job.health(pipeline).ok, 120,
                     "the analytics job back")
    observe.wait_for(lambda: es_delivered() == [2 * tokens] * messages, 120, "every message's deliveries in Elasticsearch")
    time.sleep(5)  # anything replayed has arrived
    assert receipts(pipeline, app) == {"delivered": 2 * messages * tokens}
    assert es_delivered() == [2 * tokens] * messages, "counted once, after the restart and the retries"
