"""Dispatch through the real stack: throttling and retries, dead-token feedback, priority lanes,
lane records from before bundles and broken ones, metrics, and a kill -9 of the dispatch worker
mid-run (no loss, duplicates counted).

Every test takes the `pipeline` fixture: infra/ starts the real Kafka broker, the three Flink jobs,
Elasticsearch, ClickHouse and the vendor simulator, and each test produces to Kafka and reads what
the jobs wrote (Kafka topics, ClickHouse rows, Prometheus metrics, the simulator's accepted pushes)."""
from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from contract_cases import HARNESSES, UMENG
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra.jobs import FlinkJob
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.jobs.fanout import records
from pushpipe.producer import PushProducer, device_event, now_ms, push_request
from pushpipe.schemas import codec
from pushpipe.sinks import clickhouse
from test_isolation_e2e import dead_letters

pytestmark = pytest.mark.stack


def tok(run_id: str, user: int, device: int = 0) -> str:
    return f"{run_id}{user:05x}{device:x}".ljust(64, "c")


def register(producer: PushProducer, settings: Settings, app: str, run_id: str, users: int, per_user: int = 1) -> None:
    for u in range(users):
        for d in range(per_user):
            producer.device_event(device_event(app, f"{run_id}-{u}", tok(run_id, u, d)))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=90)


def wait_accepted(admin: SimulatorAdmin, prefix: str, count: int, timeout_s: float = 240) -> dict:
    observe.wait_for(lambda: admin.accepted(prefix)["unique"] >= count, timeout_s, f"{count} tokens accepted")
    return admin.accepted(prefix, payloads=True)


@pytest.fixture
def admin(pipeline: Settings):
    admin = SimulatorAdmin(pipeline.simulator_admin_url)
    yield admin
    admin.configure(vendor="apns", throttle_rate=0.0, unavailable_rate=0.0, outage=False, unregistered_tokens=[])


def test_throttled_tokens_are_retried_until_accepted(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app = f"throttle-{run_id}"
    register(producer, pipeline, app, run_id, users=60)
    admin.configure(vendor="apns", throttle_rate=0.2, retry_after_s=1)  # 0.2^5: a token throttled on all 5 sends is rare
    for u in range(60):
        producer.request(push_request(app, [f"{run_id}-{u}"], "t", "b"))
    producer.flush()
    accepted = wait_accepted(admin, run_id, 60)
    assert Counter(accepted["tokens"]) == Counter({tok(run_id, u): 1 for u in range(60)})
    ch = clickhouse.connect(pipeline, create=False)
    sql = f"SELECT sum(accepted) AS a, sum(throttled) AS t FROM {pipeline.clickhouse_database}.dispatch_results FINAL WHERE app_id = '{app}'"
    row = observe.wait_for(lambda: (r := ch.rows(sql)[0]) and int(r["a"]) == 60 and r, 60, "final counts")
    assert int(row["t"]) == 0  # throttled sends were retried: no token ended throttled
    stats = admin.stats(run_id)
    assert stats["by_status"].get("429", 0) > 0, "the simulator did throttle"


def test_dead_tokens_are_not_targeted_again(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app = f"dead-{run_id}"
    register(producer, pipeline, app, run_id, users=1, per_user=2)
    dead, alive = tok(run_id, 0, 0), tok(run_id, 0, 1)
    admin.configure(vendor="apns", unregistered_tokens=[dead])
    producer.request(push_request(app, [f"{run_id}-0"], "first", "push"))
    producer.flush()
    wait_accepted(admin, alive, 1)
    observe.wait_fanout_read(pipeline, pipeline.topics.device_feedback, timeout_s=60)
    producer.request(push_request(app, [f"{run_id}-0"], "second", "push"))
    producer.flush()
    observe.wait_for(lambda: admin.accepted(alive)["count"] >= 2, 60, "the second push")
    assert admin.stats(dead)["received"] == 1, "the dead token was called once, then dropped by fan-out"


def test_high_priority_is_not_starved_by_a_low_priority_flood(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app = f"lanes-{run_id}"
    users = 3000
    register(producer, pipeline, app, run_id, users=users)
    for u in range(users - 20):
        producer.request(push_request(app, [f"{run_id}-{u}"], "sale", "low", priority="low", category="transactional"))
    producer.flush()
    observe.wait_for(lambda: admin.accepted(run_id)["count"] >= 200, 120, "the low-priority flood to flow")
    sent_high = time.time()
    for u in range(users - 20, users):
        producer.request(push_request(app, [f"{run_id}-{u}"], "otp", "high", priority="high"))
    producer.flush()
    records = wait_accepted(admin, run_id, users, timeout_s=300)["records"]
    at = {r["token"]: r["at"] for r in records}
    high = [at[tok(run_id, u)] for u in range(users - 20, users)]
    low_left = [a for u in range(users - 20) if (a := at[tok(run_id, u)]) > sent_high]
    print(f"\nhigh pushes accepted {statistics.median(high) - sent_high:.1f}s (median) after they were sent; "
          f"{len(low_left)} low ones were still waiting then, the last accepted {max(low_left, default=sent_high) - sent_high:.1f}s later")
    overtaken = [a for a in low_left if a > max(high)]
    assert len(overtaken) > 200, f"high priority overtook the low-priority backlog ({len(overtaken)} low pushes after the last high)"


def test_a_lone_batch_on_a_lane_is_sent_and_an_empty_bundle_is_dead_lettered(pipeline: Settings, admin: SimulatorAdmin, run_id: str) -> None:
    """A lane record from before bundles (a bare DispatchBatch) is still sent; an empty bundle is refused with a reason."""
    request = {**push_request(f"lone-{run_id}", ["u"], "t", "b"), "created_at": now_ms()}
    lone = records.batch(request, "apns", [(tok(run_id, 0), "u", "", "")], now_ms(), "pin:u:0")
    raw = Producer({"bootstrap.servers": pipeline.kafka_bootstrap})
    raw.produce(pipeline.topics.lane("normal"), codec.encode("DispatchBatch", lone))
    raw.produce(pipeline.topics.lane("normal"), codec.encode("DispatchBundle", {"batches": []}))
    raw.flush()
    observe.wait_for(lambda: Counter(admin.accepted(run_id)["tokens"]) == Counter({tok(run_id, 0): 1}), 60, "the lone batch accepted")
    [letter] = dead_letters(pipeline, 1, lambda d: d["error"] == "empty_bundle" and d["ts"] >= request["created_at"])
    assert letter["source_topic"] == "push.dispatch.*" and letter["reason"] == "a DispatchBundle without batches"


def accepted_by_exit(settings: Settings) -> Counter:
    text = httpx.get(f"http://127.0.0.1:{settings.dispatch_metrics_port}/metrics", timeout=10).text
    found: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pushpipe_dispatch_tokens_total" and sample.labels.get("outcome") == "accepted":
                found[sample.labels["exit"]] += sample.value
    return found


def test_metrics_per_vendor_and_exit(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    """Its own 40 APNs pushes are counted on the two APNs exits (weights 3:1)."""
    app, users = f"metrics-{run_id}", 40
    register(producer, pipeline, app, run_id, users=users)
    before = accepted_by_exit(pipeline)
    for u in range(users):
        producer.request(push_request(app, [f"{run_id}-{u}"], "t", "b"))
    producer.flush()
    observe.wait_for(lambda: admin.accepted(run_id)["unique"] == users, 60, "the pushes")
    grew = observe.wait_for(lambda: (lambda d: d if sum(d.values()) >= users else None)(accepted_by_exit(pipeline) - before),
                            30, "the counters")
    assert grew["apns-a"] > 0 and grew["apns-b"] > 0 and grew["apns-a"] + grew["apns-b"] >= users, grew
    text = httpx.get(f"http://127.0.0.1:{pipeline.dispatch_metrics_port}/metrics", timeout=10).text
    for name in ("pushpipe_vendor_call_seconds_bucket", "pushpipe_breaker_open", "pushpipe_rate_limit_tokens_per_second"):
        assert name in text


def dispatch_jvm(settings: Settings) -> int:
    """The JVM that runs dispatch's operators and their Python (thread mode)."""
    jvm = FlinkJob("dispatch").jvm(settings)
    assert jvm is not None, "no dispatch JVM"
    return jvm


def test_kill_9_of_the_dispatch_jvm_mid_stream_loses_nothing(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app = f"crash-{run_id}"
    users, per_user = 1500, 2
    register(producer, pipeline, app, run_id, users=users, per_user=per_user)
    for u in range(users):
        producer.request(push_request(app, [f"{run_id}-{u}"], "t", "b"))
    producer.flush()
    expected = users * per_user
    observe.wait_for(lambda: admin.accepted(run_id)["count"] >= expected // 5, 120, "a fifth of the sends")
    worker = dispatch_jvm(pipeline)
    os.kill(worker, signal.SIGKILL)
    killed_at = admin.accepted(run_id)["count"]
    seen = wait_accepted(admin, run_id, expected, timeout_s=300)
    time.sleep(5)  # let any replayed duplicates arrive
    final = admin.accepted(run_id)
    lost, duplicates = expected - final["unique"], final["count"] - final["unique"]
    print(f"\nkill -9 after {killed_at}/{expected} sends: lost={lost} duplicates={duplicates}")
    assert lost == 0
    assert duplicates <= 200 * per_user, "only calls in flight at the crash may repeat"
    assert dispatch_jvm(pipeline) != worker and seen["unique"] == expected


def test_every_vendor_end_to_end(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    """One user with a device on each vendor: one push reaches every vendor's simulator."""
    app = f"vendors-{run_id}"
    tokens = {h.vendor.value: h.valid_token(run_id) for h in HARNESSES}
    for vendor, token in tokens.items():
        producer.device_event(device_event(app, f"{run_id}-all", token, vendor=vendor))
    producer.flush()
    observe.wait_fanout_read(pipeline, timeout_s=90)
    producer.request(push_request(app, [f"{run_id}-all"], "Hello", "from every vendor"))
    producer.flush()
    for vendor, token in tokens.items():
        observe.wait_for(lambda: admin.accepted(token, vendor=vendor)["count"] == 1, 90, f"{vendor} to accept its token")
    ch = clickhouse.connect(pipeline, create=False)
    sql = f"SELECT vendor, sum(accepted) AS a FROM {pipeline.clickhouse_database}.dispatch_results FINAL WHERE app_id = '{app}' GROUP BY vendor"
    rows = observe.wait_for(lambda: (r := ch.rows(sql)) and len(r) == len(tokens) and r, 60, "ClickHouse rows for every vendor")
    assert {r["vendor"]: int(r["a"]) for r in rows} == dict.fromkeys(tokens, 1)


def test_vendor_outage_opens_the_breaker_and_falls_back_to_umeng(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin,
                                                                 run_id: str) -> None:
    app = f"fallback-{run_id}"
    users = 12
    umeng = {u: UMENG.valid_token(f"{run_id}{u:02x}") for u in range(users)}
    for u in range(users):
        producer.device_event(device_event(app, f"{run_id}-{u}", tok(run_id, u), fallback_token=umeng[u]))
    producer.flush()
    observe.wait_fanout_read(pipeline, timeout_s=90)
    admin.configure(vendor="apns", outage=True)
    for u in range(users):
        producer.request(push_request(app, [f"{run_id}-{u}"], "t", "b"))
    producer.flush()
    observe.wait_for(lambda: admin.accepted(run_id, vendor="umeng")["unique"] == users, 120, "the fallback channel")
    assert admin.accepted(run_id, vendor="apns")["count"] == 0
    text = httpx.get(f"http://127.0.0.1:{pipeline.dispatch_metrics_port}/metrics", timeout=10).text
    assert 'pushpipe_dispatch_fallback_tokens_total{fallback="umeng",vendor="apns"}' in text
    assert 'pushpipe_breaker_open{exit="apns-a",vendor="apns"} 1.0' in text
