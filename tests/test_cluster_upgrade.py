"""Upgrades without loss and faults on the Flink cluster (issue 17, items 3 and 4), in a home of its own.

One module fixture: Kafka x3, the cluster, fan-out and dispatch at parallelism 2. One steady stream of single-pin
APNs requests (5/s) (one device per pin, tokens with the run's prefix) runs while, in turn, fan-out is upgraded to
parallelism 3, dispatch is upgraded, fan-out goes back to 2 (each `pushpipe upgrade`: stop with a savepoint, resubmit
from it), a TaskManager is killed -9 and a Kafka broker is killed -9. A scheduled push (deliver_at) is pending across
the first upgrade. Afterwards every request is accounted for: accepted by the APNs simulator, or not sent with a
reason (push.results, push.dlq); lost = requested - (accepted unique + not sent); duplicated = accepted - unique.

Only the stack's vendor simulators are shared, read-only: their records are read by prefix, never reset."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

import clusterhome
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra import flinkcluster, flinkrest, process
from pushpipe.infra.clusterjobs import ClusterJob, answer, savepoint_file, upgrade
from pushpipe.infra.kafka import Kafka, nodes
from pushpipe.infra.simulators import SimulatorAdmin, Simulators
from pushpipe.producer import PushProducer, device_event, now_ms, push_request
from pushpipe.schemas import codec

# The cluster, both jobs, three upgrades and two faults on a shared 2-core machine: ~15 minutes (the README's figures)
pytestmark = [pytest.mark.stack, pytest.mark.beside_stack, pytest.mark.cluster_upgrade, pytest.mark.timeout(1800)]
JOBS = ("fanout", "dispatch")
PINS = 5000  # pins registered; the stream sends to them in turn, one request per pin (16 minutes of it)
RATE = 5  # requests per second
# A duplicate needs a vendor call in flight when a job stops: the ledger (jobs/ledger.py) marks tokens SENDING before
# the call and skips SENT ones on replay, so at most one dispatch batch per subtask and fault is sent twice. The
# stream sends single-pin requests at 10/s, so a batch holds a few tokens: 10 per event is that bound, generously.
DUPLICATES_PER_EVENT = 10


@pytest.fixture(scope="module")
def stack_simulators() -> Settings:
    """The running stack's vendor simulators (healthy, or the tests fail): read by prefix, never reset here."""
    shared = Settings()
    health = Simulators().health(shared)
    assert health.ok, f"the stack's vendor simulators: {health.detail}"
    return shared


@pytest.fixture(scope="module")
def cluster(stack_simulators: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = clusterhome.home_settings(stack_simulators, tmp_path_factory.mktemp("upgrade-home"), flink_cluster_rest_port=38084,
                                         kafka_bootstrap="127.0.0.1:39892", dispatch_metrics_port=38250)
    clusterhome.write_home(settings, stack_simulators, {})
    with clusterhome.running_cluster(settings, JOBS):
        yield settings


@dataclass
class Stream:
    """Single-pin requests at RATE/s in a thread, each to the next pin; remembers when each was produced."""
    settings: Settings
    app: str
    sent: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), msg_id)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        producer = PushProducer(self.settings)
        while not self._stop.is_set() and len(self.sent) < PINS:
            request = push_request(self.app, [f"u{len(self.sent)}"], "t", "b")
            producer.request(request)
            producer.flush()
            self.sent.append((time.time(), request["msg_id"]))
            self._stop.wait(1 / RATE)

    def stop(self) -> None:
        self._stop.set()


def token(run: str, pin: int) -> str:
    return f"{run}{pin:05x}".ljust(64, "d")


def not_sent(settings: Settings, app: str) -> dict[str, str]:
    """{msg_id: reason} of the app's requests that push.results or push.dlq say were not sent (final, not accepted),
    read up to the ends the topics had when called (the stream keeps adding to them)."""
    found: dict[str, str] = {}
    for message in records_until_now(settings, [settings.topics.results, settings.topics.dlq]):
        if message.topic() == settings.topics.dlq:
            letter = codec.decode("DeadLetter", message.value())
            if letter["app_id"] == app and letter["msg_id"]:
                found[letter["msg_id"]] = letter["reason"]
            continue
        result = codec.decode("DispatchResult", message.value())
        for outcome in result["outcomes"] if result["app_id"] == app else []:
            if outcome["final"] and outcome["outcome"] != "accepted":
                found[result["msg_id"]] = outcome["reason"] or outcome["outcome"]
    return found


def records_until_now(settings: Settings, topics: list[str]) -> Iterator[Message]:
    """Every record of `topics` from the start of each partition up to its end offset at the call."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-accounting-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        ends = {}
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=30).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in ends])
        while ends:
            for message in consumer.consume(500, timeout=5):
                end = ends.get((message.topic(), message.partition()))
                if not message.error() and end is not None and message.offset() < end and message.value() is not None:
                    yield message
            # positions, not the last offsets seen: a transaction's commit marker takes an offset no record has
            for at in consumer.position([TopicPartition(topic, partition) for topic, partition in ends]):
                if at.offset >= ends[(at.topic, at.partition)]:
                    del ends[(at.topic, at.partition)]
    finally:
        consumer.close()


@dataclass(frozen=True)
class Tally:
    requested: int
    accepted: int
    unique: int
    not_sent: int

    @property
    def lost(self) -> int:
        return self.requested - self.unique - self.not_sent

    @property
    def duplicated(self) -> int:
        return self.accepted - self.unique


@dataclass(frozen=True)
class Requested:
    """The requests to account for: their tokens (one each) and msg_ids."""
    tokens: frozenset[str]
    msg_ids: frozenset[str]

    @staticmethod
    def of(stream: Stream, run: str, *extra: tuple[str, str]) -> Requested:
        """What the stream produced so far, and `extra` (token, msg_id) pairs."""
        sent = list(enumerate(msg_id for _, msg_id in list(stream.sent)))
        pairs = [(token(run, pin), msg_id) for pin, msg_id in sent] + list(extra)
        return Requested(frozenset(t for t, _ in pairs), frozenset(m for _, m in pairs))


def tally(settings: Settings, admin: SimulatorAdmin, run: str, app: str, requested: Requested) -> Tally:
    """What the simulator accepted of `requested`; push.results and push.dlq are read only when some are not accepted."""
    accepted = [t for t in admin.accepted(run)["tokens"] if t in requested.tokens]
    unique = len(set(accepted))
    short = unique < len(requested.tokens)
    unsent = len(set(not_sent(settings, app)) & requested.msg_ids) if short else 0
    return Tally(len(requested.tokens), len(accepted), unique, unsent)


def accounted(settings: Settings, admin: SimulatorAdmin, run: str, app: str, requested: Requested,
              timeout_s: float = 120) -> Tally:
    """The tally once every request is accepted or not sent with a reason (or the timeout's last)."""
    try:
        return observe.wait_for(lambda: (t := tally(settings, admin, run, app, requested)).lost <= 0 and t, timeout_s,
                                f"{len(requested.tokens)} requests of {app} accounted for", interval_s=3)
    except TimeoutError:
        return tally(settings, admin, run, app, requested)


def recovery_seconds(admin: SimulatorAdmin, run: str, stream: Stream, since: float) -> float:
    """Seconds from `since` until the first request produced after it was accepted (the simulator's clock, on this
    machine): the flow is back."""
    first = next((i for i, (at, _) in enumerate(stream.sent) if at >= since), len(stream.sent))
    window = [token(run, pin) for pin in range(first, first + 5 * RATE)]
    observe.wait_for(lambda: set(window) & set(admin.accepted(run)["tokens"]), 240,
                     "a request produced after the fault accepted", interval_s=1)
    accepted_at = [got["first_at"] for tok in window if (got := admin.accepted(tok, tokens=False))["count"]]
    return min(accepted_at) - since


@pytest.fixture(scope="module")
def stream(cluster: Settings, stack_simulators: Settings) -> Iterator[tuple[Stream, str, SimulatorAdmin]]:
    """Devices registered, then the stream running; stopped at the end of the module."""
    run = uuid.uuid4().hex[:8]
    app = f"upgrade-{run}"
    producer = PushProducer(cluster)
    for pin in range(PINS + 1):
        producer.device_event(device_event(app, f"u{pin}", token(run, pin)))
    producer.flush()
    observe.wait_fanout_read(cluster, timeout_s=600)  # process mode on a shared machine: ~800 events/s, or far fewer
    flow = Stream(cluster, app)
    thread = threading.Thread(target=flow.run, daemon=True)
    thread.start()
    yield flow, run, SimulatorAdmin(stack_simulators.simulator_admin_url)
    flow.stop()
    thread.join(10)


def test_jobs_upgraded_in_turn_mid_stream_lose_nothing(cluster: Settings, stream: tuple[Stream, str, SimulatorAdmin]) -> None:
    """fan-out 2 -> 3, dispatch, fan-out 3 -> 2, each from its savepoint, while the stream runs; a push scheduled for
    just after the first upgrade fires once, on time, from the restored timer."""
    flow, run, admin = stream
    time.sleep(5)
    scheduled = push_request(flow.app, [f"u{PINS}"], "later", "b", deliver_at=now_ms() + 60_000)
    producer = PushProducer(cluster)
    producer.request(scheduled)
    producer.flush()
    steps: list[str] = []
    for job, subtasks in (("fanout", 3), ("dispatch", None), ("fanout", 2)):
        done = upgrade(cluster, job, subtasks)
        steps += [f"{job}: {s.what.split(' from ')[0]} {s.seconds:.1f}s" for s in done]
        assert savepoint_file(cluster, job).read_text().strip().startswith("file:")
    print("\n" + "\n".join(steps))
    late = token(run, PINS)
    requested = Requested.of(flow, run, (late, scheduled["msg_id"]))
    observe.wait_for(lambda: admin.accepted(late)["count"] >= 1, 120, "the scheduled push")
    found = admin.accepted(late)
    assert found["count"] == 1 and found["first_at"] * 1000 >= scheduled["deliver_at"] - 50, found
    result = accounted(cluster, admin, run, flow.app, requested)
    print(f"upgrades: requested {result.requested}, lost {result.lost}, duplicated {result.duplicated}")
    assert result.lost <= 0 and result.duplicated <= 3 * DUPLICATES_PER_EVENT, result
    assert {p for _, p in parallelism(cluster, "fanout")} == {2}


def parallelism(settings: Settings, job: str) -> list[tuple[str, int]]:
    jid = ClusterJob(job).jid(settings) or ""
    return answer(lambda: flinkrest.vertex_parallelism(flinkcluster.rest_url(settings), jid), f"{job}'s operators")


def kill_taskmanager(settings: Settings) -> None:
    """kill -9 the second TaskManager's JVM; then what pushpipe's supervisor does: stop what is left of it (its Python
    workers outlive the JVM, in its process group) and start it again."""
    victim = flinkcluster.taskmanagers()[-1]
    os.kill(process.read_pid(settings, victim.name) or 0, signal.SIGKILL)
    time.sleep(2)
    victim.stop(settings)
    victim.start(settings)


def kill_broker(settings: Settings) -> None:
    """kill -9 the third Kafka broker; the supervisor's restart (Kafka().restart) brings back only it, 10 s later."""
    os.kill(process.read_pid(settings, nodes(settings)[-1].process_name) or 0, signal.SIGKILL)
    time.sleep(10)
    Kafka().restart(settings)


def test_a_taskmanager_and_a_broker_killed_mid_stream_lose_nothing(cluster: Settings,
                                                                   stream: tuple[Stream, str, SimulatorAdmin]) -> None:
    flow, run, admin = stream
    rows = []
    for fault, kill in (("kill -9 TaskManager", kill_taskmanager), ("kill -9 Kafka broker", kill_broker)):
        time.sleep(5)
        before = tally(cluster, admin, run, flow.app, Requested.of(flow, run))
        killed_at = time.time()
        kill(cluster)
        recovery = recovery_seconds(admin, run, flow, killed_at)
        for job in JOBS:
            ClusterJob(job).wait_ready(cluster)
        after = accounted(cluster, admin, run, flow.app, Requested.of(flow, run))
        rows.append((fault, after.lost, after.duplicated - before.duplicated, recovery))
    print("\nfault                 lost  duplicated  recovery s")
    for fault, lost, duplicated, recovery in rows:
        print(f"{fault:<21} {lost:>4}  {duplicated:>10}  {recovery:>10.1f}")
    assert all(lost <= 0 and duplicated <= DUPLICATES_PER_EVENT for _, lost, duplicated, _ in rows), rows
