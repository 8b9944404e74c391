"""Every request ends with an outcome, and replays never double count, through the real stack.

- a broadcast or segment that matches no device ends as "no_devices_matched"; devices a broadcast skips
  (switched off, the other environment) are counted per shard and reason, a device without a pin is reached
  like any other; a deliver_at beyond the TTL and a device without a token are refused with their reason;
- tombstones (null values) as each topic's semantics say: on compacted device.events the token is deleted, on
  compacted user.preferences the setting returns to its default, on every other input topic a dead letter;
- kill -9 of each job in turn in the middle of a broadcast (the supervisor brings it back): afterwards the simulator, ClickHouse and
  Elasticsearch hold exactly one accepted push per device (batch ids are derived, not random).

Every test takes the `pipeline` fixture: infra/ starts the real Kafka broker, the three Flink jobs,
Elasticsearch, ClickHouse and the vendor simulator; each test produces to Kafka and reads what the jobs
wrote (push.dlq, ClickHouse rows, Elasticsearch documents, the simulator's accepted pushes)."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from pushpipe import observe
from pushpipe.config import JOBS, Settings
from pushpipe.infra import process
from pushpipe.infra.jobs import FlinkJob
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, now_ms, preference_event, push_request
from pushpipe.sinks import clickhouse, elastic
from test_fanout_e2e import prefer
from test_isolation_e2e import counted, dead_letters, message_counts, registered, sent, tok

pytestmark = pytest.mark.stack


def test_a_broadcast_that_matches_nobody_and_the_devices_it_skips_have_outcomes(pipeline: Settings, producer: PushProducer,
                                                                                 admin: SimulatorAdmin, run_id: str) -> None:
    empty, app = f"empty-{run_id}", f"skips-{run_id}"
    registered(producer, pipeline,
               *[device_event(app, f"on{i}", tok(run_id, i)) for i in range(3)],
               *[device_event(app, f"off{i}", tok(run_id, 10 + i)) for i in range(2)],
               *[device_event(app, f"off{i}", tok(run_id, 10 + i), kind="switch_off") for i in range(2)],
               device_event(app, "tester", tok(run_id, 20), environment="test"),
               device_event(app, "", tok(run_id, 30)),  # no pin: an anonymous install, reached like any device
               device_event(app, "blank", ""))  # no token: refused
    nobody = push_request(empty, [], "t", "b", target="broadcast")
    no_segment = push_request(app, [], "t", "b", target="segment", segment={"brand": "nokia"})
    everyone = push_request(app, [], "t", "b", target="broadcast")
    too_late = push_request(app, ["on0"], "t", "b", ttl_s=60, deliver_at=now_ms() + 120_000)
    sent(producer, nobody, no_segment, everyone, too_late)
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] == 4, 60, "the enabled production devices")
    es = elastic.connect(pipeline)
    for request in (nobody, no_segment):
        found = observe.wait_for(lambda: elastic.deliveries(es, pipeline, request["app_id"], request["msg_id"]), 60,
                                 "the outcome of a message that matched nobody")
        assert [d["reason"] for d in found.values()] == ["no_devices_matched"]
    skipped = observe.wait_for(lambda: skipped_devices(es, pipeline, everyone), 60, "the skipped devices")
    assert skipped == {"switched_off": 2, "test_device": 1}
    observe.wait_for(lambda: message_counts(pipeline, app, everyone["msg_id"]) == {"accepted": 4, "suppressed": 3}, 60,
                     "the broadcast's totals")
    letters = dead_letters(pipeline, 2, lambda d: d["app_id"] == app)
    reasons = sorted(d["reason"] for d in letters)
    assert any("beyond the request's TTL of 60 s" in r for r in reasons), reasons
    assert "token is empty" in reasons, reasons


def test_tombstones_delete_on_compacted_topics_and_are_dead_lettered_elsewhere(pipeline: Settings, producer: PushProducer,
                                                                               admin: SimulatorAdmin, run_id: str) -> None:
    app, gone, kept = f"tomb-{run_id}", tok(run_id, 1), tok(run_id, 2)
    registered(producer, pipeline, device_event(app, "leaver", gone), device_event(app, "stayer", kept))
    prefer(pipeline, preference_event(app, "stayer", "opt_out", category="marketing"))
    raw = Producer({"bootstrap.servers": pipeline.kafka_bootstrap})
    raw.produce(pipeline.topics.device_events, value=None, key=f"{app}|{gone}".encode())
    raw.produce(pipeline.topics.preferences, value=None, key=f"{app}|stayer|category:marketing".encode())
    logs = [pipeline.topics.requests, pipeline.topics.device_feedback, pipeline.topics.results, *pipeline.topics.lanes]
    for topic in logs:
        raw.produce(topic, value=None, key=f"{app}|{topic}".encode())
    assert raw.flush(30) == 0
    observe.wait_fanout_read(pipeline, timeout_s=60)
    letters = dead_letters(pipeline, len(logs), lambda d: d["error"] == "tombstone" and f"'{app}|" in d["reason"])
    assert sorted(d["source_topic"] for d in letters) == sorted(logs)
    assert all("not compacted" in d["reason"] for d in letters), [d["reason"] for d in letters]
    sale = push_request(app, [], "sale", "b", target="broadcast", category="marketing")
    direct = push_request(app, ["leaver"], "t", "b")
    sent(producer, sale, direct)
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] == 1, 60, "the marketing broadcast to the user who opted in again")
    assert admin.accepted(kept)["count"] == 1 and admin.accepted(gone)["count"] == 0
    es = elastic.connect(pipeline)
    found = observe.wait_for(lambda: elastic.deliveries(es, pipeline, app, direct["msg_id"]), 60, "the deleted pin's outcome")
    assert [d["reason"] for d in found.values()] == ["no_devices"], "the tombstoned token is gone from its pin too"


def test_a_device_without_a_pin_is_registered_reached_bound_and_cleaned_up(pipeline: Settings, producer: PushProducer,
                                                                           admin: SimulatorAdmin, run_id: str) -> None:
    app, kept, dead = f"anon-{run_id}", tok(run_id, 1), tok(run_id, 2)
    admin.configure(vendor="apns", unregistered_tokens=[dead])
    try:
        registered(producer, pipeline, device_event(app, "", kept, timezone="Europe/Berlin"), device_event(app, "", dead))
        first = push_request(app, [], "hello", "b", target="broadcast")
        sent(producer, first)
        observe.wait_for(lambda: message_counts(pipeline, app, first["msg_id"]) == {"accepted": 1, "invalid_token": 1}, 60,
                         "the broadcast to both anonymous installs")
    finally:
        admin.configure(vendor="apns", unregistered_tokens=[])
    registered(producer, pipeline, device_event(app, "u1", kept))  # the user signs in on the anonymous install
    observe.wait_fanout_read(pipeline, pipeline.topics.device_feedback, timeout_s=60)  # the dead token's deregistration
    again = push_request(app, [], "sale", "b", target="broadcast", category="marketing")  # through the users' directory
    direct = push_request(app, ["u1"], "for you", "b")
    sent(producer, again, direct)
    observe.wait_for(lambda: admin.accepted(kept)["count"] == 3, 60, "the bound device, once per push")
    observe.wait_for(lambda: message_counts(pipeline, app, again["msg_id"]).get("accepted") == 1, 60, "the second broadcast")
    time.sleep(3)
    assert admin.accepted(kept)["count"] == 3 and admin.accepted(dead)["count"] == 0, "the dead token was cleaned up"
    assert message_counts(pipeline, app, again["msg_id"]) == {"accepted": 1}
    assert not dead_letters(pipeline, 1, lambda d: d["app_id"] == app, timeout_s=10), "its feedback is not a dead letter"


def skipped_devices(es, settings: Settings, request: dict) -> Counter | None:
    """Devices a broadcast skipped, by reason: aggregated outcomes, one per shard and reason."""
    found = Counter()
    for d in elastic.deliveries(es, settings, request["app_id"], request["msg_id"]).values():
        if d["count"]:
            found[d["reason"]] += d["count"]
    return found or None


def kill_job(settings: Settings, job: str) -> None:
    """kill -9 of a job's whole process group: its Python client and the JVM of its mini-cluster."""
    pid = process.read_pid(settings, f"job-{job}")
    assert pid is not None, f"{job} is running"
    os.killpg(pid, signal.SIGKILL)
    observe.wait_for(lambda: process.read_pid(settings, f"job-{job}") != pid or not process.is_running(settings, f"job-{job}"),
                     30, f"{job} to be gone", interval_s=0.1)


def test_kill_9_of_each_job_mid_broadcast_leaves_exact_counts_everywhere(pipeline: Settings, producer: PushProducer,
                                                                          admin: SimulatorAdmin, run_id: str) -> None:
    app, devices = f"replay-{run_id}", 20_000  # HMS at the embedded policy's 5,000/s: a broadcast takes 4 s or more
    for n in range(devices):
        producer.device_event(device_event(app, f"u{n}", f"{run_id}{n:08x}IQAAAACy" + "x" * 40, vendor="hms"))
    producer.flush()
    observe.wait_fanout_read(pipeline, timeout_s=300)
    ch = clickhouse.connect(pipeline, create=False)
    for n, job in enumerate(JOBS):
        campaign = f"replay-{run_id}-{job}"
        admin.reset(config=False)
        request = push_request(app, [], "t", f"#{n}", target="broadcast", campaign=campaign)
        sent(producer, request)
        observe.wait_for(lambda: admin.accepted(run_id, vendor="hms", tokens=False)["count"] >= devices // 10, 120,
                         "a tenth of the broadcast", interval_s=0.2)
        kill_job(pipeline, job)
        observe.wait_for(lambda: FlinkJob(job).health(pipeline).ok, 120, f"the supervisor to bring {job} back")
        observe.wait_for(lambda: admin.accepted(run_id, vendor="hms")["unique"] >= devices, 300,
                         f"every device after the kill of {job}", interval_s=2)
        observe.wait_campaign_counted(pipeline, campaign, devices, 300)
        observe.wait_for(lambda: message_counts(pipeline, app, request["msg_id"]).get("accepted") == devices, 120,
                         "Elasticsearch's totals")
        observe.wait_for(lambda: message_counts(pipeline, app, request["msg_id"]).get("delivered") == devices, 120,
                         "every device's delivery receipt (HMS posts one per accepted token)")
        time.sleep(8)  # replays, had they double counted, would land by now
        final = admin.accepted(run_id, vendor="hms")
        rows = ch.rows(f"SELECT sum(accepted) AS a, sum(requested) AS r FROM {pipeline.clickhouse_database}.dispatch_results FINAL"
                       f" WHERE campaign = '{campaign}'")
        print(f"\nkill -9 of {job}: simulator {final['count']} calls for {final['unique']} devices,"
              f" ClickHouse {rows[0]['a']} accepted, Elasticsearch {message_counts(pipeline, app, request['msg_id'])}")
        assert int(rows[0]["a"]) == devices and int(rows[0]["r"]) == devices, "ClickHouse counts each device once"
        assert message_counts(pipeline, app, request["msg_id"]) == {"accepted": devices, "delivered": devices}, "so does Elasticsearch"
        assert final["unique"] == devices
        assert final["count"] - final["unique"] <= (200 * 1000 if job == "dispatch" else 0), "only calls in flight repeat"
    ch.close()
    assert counted(pipeline, app) == devices * len(JOBS)
