"""Supervision through the real stack: a killed job, simulator or ClickHouse owner comes back on its own
within 30 s and nothing is lost (issue 10 item 8); the dispatch JVM killed again and again under load, or
frozen, sending resumes each time, and an operator that hangs in a running job is caught (issue 19); a failing
job's status says why; each job's Python workers beat with their garbage collector set for streams.

Each test produces to the real Kafka and checks what the vendor simulator accepted and ClickHouse
counted; the supervisor (`pushpipe up` starts it) does the restarts, counted in restarts.json."""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import statistics
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushpipe import collector, liveness, observe
from pushpipe.config import Settings
from pushpipe.infra import flinkrest, process, restarts, stack
from pushpipe.infra.clickhouse import ClickHouse
from pushpipe.infra.jobs import FlinkJob
from pushpipe.infra.simulators import SimulatorAdmin, Simulators
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.sinks import clickhouse

pytestmark = pytest.mark.stack

# Issue 19's bound. Under a load average of ~25 on 2 cores (another stack's benchmarks) a Python worker's
# start alone took 10-30 s; PUSHPIPE_TEST_BACK_WITHIN_S lets such a machine measure without failing.
BACK_WITHIN_S = float(os.environ.get("PUSHPIPE_TEST_BACK_WITHIN_S", "30"))
IDLE_BACK_WITHIN_S = BACK_WITHIN_S + 15  # detection, then a whole job restart


def tok(run_id: str, wave: int, user: int) -> str:
    return f"{run_id}{wave:02x}{user:05x}".ljust(64, "c")


def register(producer: PushProducer, settings: Settings, app: str, run_id: str, waves: int, users: int) -> None:
    for w in range(waves):
        for u in range(users):
            producer.device_event(device_event(app, f"{run_id}-{w}-{u}", tok(run_id, w, u)))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=120)


def push_wave(producer: PushProducer, app: str, run_id: str, wave: int, users: int) -> None:
    for u in range(users):
        producer.request(push_request(app, [f"{run_id}-{wave}-{u}"], "t", "b"))
    producer.flush()


def restart_count(settings: Settings, name: str) -> int:
    return int(restarts.load(settings).get(name, {}).get("count", 0))


KILLED = [(FlinkJob("fanout"), "job-fanout"), (FlinkJob("dispatch"), "job-dispatch"), (FlinkJob("analytics"), "job-analytics"),
          (Simulators(), "simulators"), (ClickHouse(), "clickhouse")]


def ledger_resent(settings: Settings) -> float:
    """Tokens the (restarted) dispatch job sent again because its ledger had them in flight at the crash."""
    text = httpx.get(f"http://127.0.0.1:{settings.dispatch_metrics_port}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "pushpipe_ledger_tokens_total" and sample.labels.get("kind") == "resent")


def running(component: object, settings: Settings) -> bool:
    """A job whose mini-cluster runs it again (its tasks may still be restoring), or a healthy service."""
    if isinstance(component, FlinkJob):
        views = flinkrest.jobs(component.address(settings))
        return bool(views) and views[0].state == "RUNNING"
    return component.health(settings).ok


def test_killed_components_come_back_and_nothing_is_lost(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    app, users = f"supervise-{run_id}", 60
    register(producer, pipeline, app, run_id, waves=2 * len(KILLED), users=users)
    times: dict[str, tuple[float, float]] = {}
    repeats: dict[str, int] = {}
    in_doubt = 0.0
    for i, (component, pid_name) in enumerate(KILLED):
        before, after = 2 * i, 2 * i + 1
        push_wave(producer, app, run_id, before, users)
        observe.wait_for(lambda: admin.accepted(f"{run_id}{before:02x}")["unique"] == users, 120, f"wave {before}")
        count = restart_count(pipeline, component.name)
        leader = process.read_pid(pipeline, pid_name)
        os.kill(leader, signal.SIGKILL)
        killed_at = time.monotonic()
        if pid_name != "simulators":  # produced while it is down (a vendor down for longer than the
            push_wave(producer, app, run_id, after, users)  # retry policy's ~8 s would fail them by policy)
        observe.wait_for(lambda: process.read_pid(pipeline, pid_name) not in (None, leader) and running(component, pipeline),
                         BACK_WITHIN_S, f"{component.name} back")
        back = time.monotonic() - killed_at
        if pid_name == "simulators":
            push_wave(producer, app, run_id, after, users)
        assert restart_count(pipeline, component.name) == count + 1
        observe.wait_for(lambda: admin.accepted(f"{run_id}{after:02x}")["unique"] == users, 120, f"wave {after} after {component.name} came back")
        times[component.name] = (back, time.monotonic() - killed_at)
        if pid_name != "simulators":
            time.sleep(3)  # replays arrive
            repeats[component.name] = sum(admin.accepted(f"{run_id}{w:02x}")["count"] - users for w in (before, after))
            if pid_name == "job-dispatch":
                in_doubt = ledger_resent(pipeline)
    print("\nkill -9, then back (job RUNNING / service healthy) and the wave produced meanwhile all accepted: "
          + ", ".join(f"{name} {b:.1f}s/{a:.1f}s" for name, (b, a) in times.items())
          + f"; tokens sent twice, per component killed: {repeats} ({in_doubt:.0f} in doubt after the dispatch crash)")
    # a token the vendor took just before the kill, its SENT mark not yet written, is sent again: the restarted
    # ledger counts those as resent, and nothing else is sent twice
    assert repeats["job-dispatch"] <= in_doubt <= 2 * users, (repeats, in_doubt)
    ch = clickhouse.connect(pipeline, create=False)
    sql = f"SELECT sum(accepted) AS a FROM {pipeline.clickhouse_database}.dispatch_results FINAL WHERE app_id = '{app}'"
    total = 2 * len(KILLED) * users
    # >=: a fan-out crash re-expands the requests it took after its last checkpoint into batches with new
    # ids, which dispatch sends again and ClickHouse counts again (a pipeline issue, printed above)
    counted = observe.wait_for(lambda: (a := int(ch.rows(sql)[0]["a"] or 0)) >= total and a, 120, f"ClickHouse to count all {total} accepted")
    print(f"ClickHouse counted {counted} accepted for {total} tokens")
    rows = {row[0]: row for row in stack.status_rows(pipeline)}
    assert rows["job-dispatch"][4].startswith(str(restart_count(pipeline, "job-dispatch")) + " (last ")
    assert rows["supervisor"][3].startswith("up")


def dispatch_jvm(settings: Settings) -> int | None:
    """The dispatch job's JVM, where its Python runs (thread mode)."""
    return FlinkJob("dispatch").jvm(settings)


class Load:
    """Single-pin pushes at a steady rate from a thread, each to a user of its own."""

    def __init__(self, settings: Settings, app: str, run_id: str, users: int, rate: float) -> None:
        self.producer, self.app, self.run_id, self.users, self.rate = PushProducer(settings), app, run_id, users, rate
        self.sent, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        began = time.monotonic()
        while not self.stop.is_set() and self.sent < self.users:
            self.producer.request(push_request(self.app, [f"{self.run_id}-0-{self.sent}"], "t", "b"))
            self.sent += 1
            time.sleep(max(0.0, began + self.sent / self.rate - time.monotonic()))
        self.producer.flush()


def test_a_frozen_dispatch_jvm_is_replaced_and_nothing_is_lost(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin,
                                                               run_id: str) -> None:
    """A JVM that stops running (SIGSTOP: alive, but never runs again) hangs its job silently; the supervisor sees its
    Python's liveness beat go silent and restarts the job from its checkpoint."""
    app, users = f"hung-{run_id}", 400
    register(producer, pipeline, app, run_id, waves=1, users=users)
    push_wave(producer, app, run_id, 0, users // 2)
    observe.wait_for(lambda: admin.accepted(f"{run_id}00", tokens=False)["count"] >= users // 2, 120, "the first half")
    worker = observe.wait_for(lambda: dispatch_jvm(pipeline), 60, "the dispatch JVM")
    count = restart_count(pipeline, "job-dispatch")
    os.kill(worker, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        push_wave_from(producer, app, run_id, users // 2, users)
        observe.wait_for(lambda: admin.accepted(f"{run_id}00")["unique"] >= users, IDLE_BACK_WITHIN_S + 60, "the second half")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the stopped process, if the restart left it behind
            os.kill(worker, signal.SIGKILL)
    ats = sorted(r["at"] for r in admin.accepted(f"{run_id}00", payloads=True)["records"])
    resumed = next(a for a in ats if a > stopped_at) - stopped_at
    print(f"\nfrozen dispatch JVM: sending resumed {resumed:.1f}s after it stopped")
    assert restart_count(pipeline, "job-dispatch") == count + 1
    assert "frozen" in restarts.load(pipeline)["job-dispatch"]["reason"]
    assert resumed < IDLE_BACK_WITHIN_S


@pytest.mark.parametrize("job, operator", [("dispatch", "Send"), ("fanout", "PinDirectory")])
def test_an_operator_that_hangs_in_a_running_worker_is_caught_and_nothing_is_lost(
        pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str, job: str, operator: str) -> None:
    """A deadlocked operator call (a failpoint: the process runs, the operator answers nothing) in dispatch and
    in fan-out (Python inside the JVM, thread mode): the liveness beat shows the call busy, the supervisor
    restarts the job from its checkpoint, and every push arrives."""
    app, users = f"stuck-{job}-{run_id}", 200
    register(producer, pipeline, app, run_id, waves=1, users=users)
    push_wave(producer, app, run_id, 0, users // 2)
    observe.wait_for(lambda: admin.accepted(f"{run_id}00", tokens=False)["count"] >= users // 2, 120, "the first half")
    count, failpoints = restart_count(pipeline, f"job-{job}"), liveness.failpoints_file(pipeline.run_dir)
    failpoints.write_text(json.dumps({"hang": f"{job}/{operator}"}))
    time.sleep(2 * liveness.FAILPOINTS_READ_S)  # read by the workers before the wave, not halfway through it
    try:
        push_wave_from(producer, app, run_id, users // 2, users)
        observe.wait_for(lambda: busy_s(pipeline, job) > 1, 60, f"a {operator} call to hang", interval_s=0.2)
        hung_at = time.time() - busy_s(pipeline, job)
    finally:
        failpoints.unlink(missing_ok=True)  # the restarted job runs normally
    observe.wait_for(lambda: admin.accepted(f"{run_id}00")["unique"] >= users, 120 + liveness.STUCK_S, "the second half")
    ats = [hung_at] + sorted(a for a in (r["at"] for r in admin.accepted(f"{run_id}00", payloads=True)["records"]) if a > hung_at)
    resumed = max(zip(ats, ats[1:], strict=False), key=lambda gap: gap[1] - gap[0])[1] - hung_at  # the end of the longest pause
    print(f"\n{job}/{operator} hung: caught after {liveness.STUCK_S:.0f}s busy, sending resumed {resumed:.1f}s after the hang")
    assert restart_count(pipeline, f"job-{job}") == count + 1
    assert "has been running for" in restarts.load(pipeline)[f"job-{job}"]["reason"]
    assert liveness.STUCK_S - 2 < resumed < liveness.STUCK_S + BACK_WITHIN_S, "sending paused while the call hung"


def beats(settings: Settings, job: str) -> list[dict]:
    """The liveness beats of the job's workers, one per interpreter."""
    return [json.loads(p.read_text()) for p in liveness.liveness_dir(settings.run_dir, job).glob("*.json")]


def busy_s(settings: Settings, job: str) -> float:
    """The longest operator call in progress in the job's workers, from their liveness beats."""
    return max((b["busy_ms"] / 1000 for b in beats(settings, job)), default=0.0)


def test_each_jobs_python_workers_collect_garbage_as_set_for_streams(pipeline: Settings, producer: PushProducer,
                                                                    admin: SimulatorAdmin, run_id: str) -> None:
    app, users = f"collector-{run_id}", 3
    register(producer, pipeline, app, run_id, waves=1, users=users)
    push_wave(producer, app, run_id, 0, users)
    observe.wait_for(lambda: admin.accepted(f"{run_id}00")["unique"] == users, 120, "the pushes")
    for job in ("fanout", "dispatch", "analytics"):
        beaten = observe.wait_for(lambda job=job: beats(pipeline, job), 30, f"{job}'s liveness beats")
        assert {tuple(b["collector"]) for b in beaten} == {collector.THRESHOLDS}, f"{job}: {beaten}"


def push_wave_from(producer: PushProducer, app: str, run_id: str, first: int, end: int) -> None:
    for u in range(first, end):
        producer.request(push_request(app, [f"{run_id}-0-{u}"], "t", "b"))
    producer.flush()


def test_the_dispatch_jvm_killed_again_and_again_under_load(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin,
                                                           run_id: str) -> None:
    """kill -9 of the JVM that runs dispatch's operators and their Python, three times under load: the supervisor
    restarts the job from its checkpoint each time, the sends in flight at the checkpoint are sent again (the
    ledger skips what went out), and nothing is lost."""
    app, kills, users, rate = f"rekill-{run_id}", 3, 8000, 25.0
    register(producer, pipeline, app, run_id, waves=1, users=users)
    prefix = f"{run_id}00"
    load = Load(pipeline, app, run_id, users, rate)
    load.thread.start()
    observe.wait_for(lambda: admin.accepted(prefix, tokens=False)["count"] >= 50, 120, "sends to flow")
    restarts_before = restart_count(pipeline, "job-dispatch")
    killed, rng, seen_failure = [], random.Random(run_id), ""
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(1, 8))
            os.kill(observe.wait_for(lambda: dispatch_jvm(pipeline), 60, "the dispatch JVM"), signal.SIGKILL)
            at = time.time()
            killed.append(at)

            def resumed() -> bool:
                nonlocal seen_failure
                health = FlinkJob("dispatch").health(pipeline)
                if not health.ok and ":" in health.detail:
                    seen_failure = health.detail
                return admin.accepted(prefix, tokens=False)["last_at"] > at + 1.0

            observe.wait_for(resumed, 60, "sending to resume", )
    finally:
        load.stop.set()
        load.thread.join()
    sent = load.sent
    final = observe.wait_for(lambda: (a := admin.accepted(prefix)) and a["unique"] >= sent and a, 300, f"all {sent} accepted")
    ats = sorted(r["at"] for r in admin.accepted(prefix, payloads=True)["records"])
    recovery = [next(a for a in ats if a > k + 1.0) - k for k in killed]
    via_supervisor = restart_count(pipeline, "job-dispatch") - restarts_before
    duplicates = final["count"] - final["unique"]
    print(f"\n{kills} kills of the dispatch JVM under {rate:.0f} pushes/s: first send after the kill in "
          f"min {min(recovery):.1f}s, median {statistics.median(recovery):.1f}s, max {max(recovery):.1f}s "
          f"({', '.join(f'{r:.1f}' for r in recovery)}); {via_supervisor} recovered by the supervisor restarting the job, "
          f"the rest by Flink; {sent} pushes, lost {sent - final['unique']}, duplicates {duplicates}; "
          f"a failure as status showed it: {seen_failure[:160]!r}")
    assert final["unique"] == sent
    assert max(recovery) < IDLE_BACK_WITHIN_S
    assert duplicates <= 200 * kills, "only calls in flight at a kill may repeat"


def test_a_failing_job_is_named_with_flinks_reason(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin, run_id: str) -> None:
    """Dispatch cannot open (its policy file is broken): status says RESTARTING and why, and up's check names it."""
    app, policy = f"failing-{run_id}", pipeline.dispatch_file
    register(producer, pipeline, app, run_id, waves=1, users=1)
    saved = policy.read_text()
    job = FlinkJob("dispatch")
    failpoints = liveness.failpoints_file(pipeline.run_dir)
    try:
        policy.write_text("{not json")
        failpoints.write_text(json.dumps({"fail": "dispatch/Send"}))  # Flink fails the task over: open() runs again
        time.sleep(2 * liveness.FAILPOINTS_READ_S)
        push_wave(producer, app, run_id, 0, 1)
        health = observe.wait_for(lambda: (h := job.health(pipeline)) and "JSONDecodeError" in h.detail and h, 60,
                                  "status to show the failure", interval_s=0.2)
        assert not health.ok
        print(f"\nstatus of the failing job: {health.detail}")
        named = stack.not_up([(job.name, health)])
        assert named[0].startswith("job-dispatch: ") and "JSONDecodeError" in named[0]
    finally:
        failpoints.unlink(missing_ok=True)
        policy.write_text(saved)
    observe.wait_for(lambda: admin.accepted(tok(run_id, 0, 0))["count"] == 1, 180, "the push once dispatch opens again")
