"""Kafka consumer lag and the oldest unprocessed record's age (infra/lag.py), without a broker: fakes of Kafka for the
arithmetic, fakes of confluent_kafka's AdminClient and Consumer for the adapter, a recording handler for the pushes."""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, TIMESTAMP_CREATE_TIME, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ListOffsetsResultInfo

from pushpipe.config import JOBS, load
from pushpipe.infra import lag, supervisor
from pushpipe.infra.lag import Partition

NOW = 1_700_000_000.0
REQ = "push.requests"


class FakeKafka:
    """Topics, committed offsets and watermarks as given; records' timestamps by (partition, offset)."""

    def __init__(self, marks: dict[Partition, tuple[int, int]], committed: dict[Partition, int | None],
                 stamps: dict[Partition, float] | None = None) -> None:
        self.marks, self.offsets, self.stamps = marks, committed, stamps or {}
        self.fetched: dict[Partition, int] = {}
        self.down = False
        self.loading: set[str] = set()  # groups whose coordinator is loading

    def partitions(self, topics: Sequence[str]) -> list[Partition]:
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))
        return [p for p in self.marks if p.topic in topics]

    def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
        if group in self.loading:
            raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))
        return {p: self.offsets.get(p) for p in partitions}

    def watermarks(self, partitions: Sequence[Partition]) -> dict[Partition, tuple[int, int]]:
        return {p: self.marks[p] for p in partitions}

    def timestamps(self, offsets: Mapping[Partition, int]) -> dict[Partition, float]:
        self.fetched.update(offsets)
        return {p: self.stamps[p] for p in offsets if p in self.stamps}


def P(n: int, topic: str = REQ) -> Partition:
    return Partition(topic, n)


def test_lag_is_high_minus_committed_from_the_low_watermark_when_nothing_or_deleted_was_committed() -> None:
    kafka = FakeKafka(marks={P(0): (0, 15), P(1): (3, 8), P(2): (4, 9), P(3): (0, 20)},
                      committed={P(0): 10, P(1): None, P(2): 2, P(3): 20},  # 2: retention deleted up to 4
                      stamps={P(0): NOW - 50, P(1): NOW - 70, P(2): NOW - 10})
    reading = lag.measure(kafka, "fanout", [REQ], NOW)
    assert reading.group == "pushpipe-fanout"
    assert reading.lag == {P(0): 5, P(1): 5, P(2): 5, P(3): 0}


def test_the_age_is_of_the_record_at_the_committed_offset_and_0_when_caught_up() -> None:
    caught_up = Partition("user.preferences", 0)
    kafka = FakeKafka(marks={P(0): (0, 15), P(1): (3, 8), P(3): (0, 20), caught_up: (0, 7)},
                      committed={P(0): 10, P(1): None, P(3): 20, caught_up: 7},
                      stamps={P(0): NOW - 50, P(1): NOW - 70})
    reading = lag.measure(kafka, "fanout", [REQ, "user.preferences", "device.feedback"], NOW)
    assert kafka.fetched == {P(0): 10, P(1): 3}, "one record per lagging partition, at its committed offset (or the low watermark)"
    assert reading.age_s == {REQ: 70.0, "user.preferences": 0.0, "device.feedback": 0.0}  # device.feedback: no partitions yet


def test_an_age_is_a_lower_bound_when_some_records_were_not_read_in_time_and_unknown_when_none_was() -> None:
    kafka = FakeKafka(marks={P(0): (0, 15), P(1): (0, 8), Partition("push.retry", 0): (0, 3)},
                      committed={P(0): 10, P(1): 2, Partition("push.retry", 0): 0},
                      stamps={P(1): NOW + 3})  # a producer whose clock runs ahead
    reading = lag.measure(kafka, "dispatch", [REQ, "push.retry"], NOW)
    assert reading.age_s == {REQ: 0.0}, "never negative; push.retry, lagging and not read: unknown"


# confluent_kafka's AdminClient and Consumer, as far as ConfluentKafka uses them

def done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


class FakeAdmin:
    def __init__(self, committed: Any, low: dict[int, int], high: dict[int, int]) -> None:
        self.committed, self.low, self.high = committed, low, high

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={REQ: SimpleNamespace(error=None, partitions={1: None, 0: None}),
                                       "push.results": SimpleNamespace(error=KafkaError(KafkaError.LEADER_NOT_AVAILABLE), partitions={0: None})})

    def list_consumer_group_offsets(self, request: list[ConsumerGroupTopicPartitions], request_timeout: float) -> dict[str, Future[Any]]:
        (group,) = request
        if isinstance(self.committed, Exception):
            return {group.group_id: done(self.committed)}
        answer: list[Any] = [TopicPartition(tp.topic, tp.partition, self.committed.get(tp.partition, OFFSET_INVALID))
                             for tp in group.topic_partitions]
        if self.committed.get("error"):  # one partition's error (a TopicPartition's error cannot be set from Python)
            answer.append(SimpleNamespace(topic=REQ, partition=9, offset=OFFSET_INVALID, error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
        return {group.group_id: done(ConsumerGroupTopicPartitions(group.group_id, answer))}

    def list_offsets(self, specs: dict[TopicPartition, Any], request_timeout: float) -> dict[TopicPartition, Future[Any]]:
        by = self.low if all(s is lag.EARLIEST for s in specs.values()) else self.high
        return {tp: done(ListOffsetsResultInfo(by[tp.partition], -1, -1)) for tp in specs}


class Message:
    def __init__(self, partition: int, offset: int, ts_ms: int, error: KafkaError | None = None) -> None:
        self._p, self._o, self._ts, self._e = partition, offset, ts_ms, error

    def topic(self) -> str:
        return REQ

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, self._ts

    def error(self) -> KafkaError | None:
        return self._e


class FakeConsumer:
    """Hands out the given batches, one per consume() call, then nothing."""

    def __init__(self, *batches: list[Message]) -> None:
        self.batches = list(batches)
        self.assigned: list[tuple[str, int, int]] | None = None
        self.calls = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def unassign(self) -> None:
        self.assigned = None

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls += 1
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout)
        return []


def test_the_adapter_reads_committed_offsets_watermarks_and_one_record_per_partition() -> None:
    consumer = FakeConsumer([Message(0, 9, 1_000), Message(1, 4, 0, KafkaError(KafkaError._TRANSPORT))],  # 9: before the offset asked
                            [Message(0, 10, 5_000), Message(0, 11, 9_000)],  # 11: a later record of a partition already read
                            [Message(1, 4, 7_000)], [Message(1, 5, 8_000)])
    kafka = lag.ConfluentKafka(FakeAdmin({0: 10}, low={0: 0, 1: 4}, high={0: 15, 1: 6}), consumer)
    parts = kafka.partitions([REQ, "push.results"])
    assert parts == [P(0), P(1)], "sorted; a topic with an error (being created) left out"
    assert kafka.committed("pushpipe-fanout", parts) == {P(0): 10, P(1): None}
    assert kafka.watermarks(parts) == {P(0): (0, 15), P(1): (4, 6)}
    assert kafka.timestamps({P(0): 10, P(1): 4}) == {P(0): 5.0, P(1): 7.0}
    assert consumer.calls == 3 and len(consumer.batches) == 1, "stops once each partition has its record"
    assert consumer.assigned is None, "unassigned after the fetch"


def test_the_adapter_gives_up_on_a_fetch_after_its_timeout_and_raises_on_a_failed_offsets_call_or_partition() -> None:
    admin = FakeAdmin(KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)), low={}, high={})
    kafka = lag.ConfluentKafka(admin, FakeConsumer(), timeout_s=0.3)
    began = time.monotonic()
    assert kafka.timestamps({P(0): 3}) == {}
    assert time.monotonic() - began < 1.0
    with pytest.raises(KafkaException):
        kafka.committed("pushpipe-fanout", [P(0)])
    kafka = lag.ConfluentKafka(FakeAdmin({0: 10, "error": True}, low={}, high={}), FakeConsumer())
    with pytest.raises(KafkaException, match="UNKNOWN_TOPIC_OR_PART"):
        kafka.committed("pushpipe-fanout", [P(0)])


# the exporter

class Pushes:
    """prometheus_client's push handler, recording; `fail` makes it raise as a Pushgateway that is down does."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.fail = False

    def __call__(self, url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Any:
        def push() -> None:
            if self.fail:
                raise OSError("Connection refused")
            self.sent.append((url, method, data.decode()))
        return push


def exporter(kafka: FakeKafka, pushes: Pushes, logs: list[str]) -> lag.Exporter:
    return lag.Exporter(kafka, {"fanout": [REQ], "dispatch": ["push.retry"]}, "http://127.0.0.1:1", logs.append,
                        handler=pushes, clock=lambda: NOW)


def lagging() -> FakeKafka:
    return FakeKafka(marks={P(0): (0, 15), P(1): (0, 8), Partition("push.retry", 0): (0, 3)},
                     committed={P(0): 10, P(1): 8, Partition("push.retry", 0): 3}, stamps={P(0): NOW - 42})


def test_the_figures_are_pushed_as_gauges_with_the_job_group_topic_and_partition() -> None:
    pushes, logs = Pushes(), []
    exporter(lagging(), pushes, logs).round()
    ((url, method, body),) = pushes.sent
    assert (url, method) == ("http://127.0.0.1:1/metrics/job/pushpipe-lag", "PUT")
    assert "# TYPE pushpipe_kafka_consumer_lag_records gauge" in body and "# TYPE pushpipe_kafka_oldest_unprocessed_age_seconds gauge" in body
    assert 'pushpipe_kafka_consumer_lag_records{group="pushpipe-fanout",job_name="fanout",partition="0",topic="push.requests"} 5.0' in body
    assert 'pushpipe_kafka_consumer_lag_records{group="pushpipe-fanout",job_name="fanout",partition="1",topic="push.requests"} 0.0' in body
    assert 'pushpipe_kafka_consumer_lag_records{group="pushpipe-dispatch",job_name="dispatch",partition="0",topic="push.retry"} 0.0' in body
    assert 'pushpipe_kafka_oldest_unprocessed_age_seconds{group="pushpipe-fanout",job_name="fanout",topic="push.requests"} 42.0' in body
    assert 'pushpipe_kafka_oldest_unprocessed_age_seconds{group="pushpipe-dispatch",job_name="dispatch",topic="push.retry"} 0.0' in body
    assert 'job="' not in body, "the Pushgateway would overwrite a job label with the group's"
    assert logs == []


def test_kafka_down_raises_nothing_pushes_nothing_and_is_logged_once_until_it_is_back() -> None:
    kafka, pushes, logs = lagging(), Pushes(), []
    kafka.down = True
    export = exporter(kafka, pushes, logs)
    for _ in range(3):
        export.round()
    assert pushes.sent == [], "no push: the group's push_time_seconds goes stale (JobDown)"
    assert len(logs) == 2 and all("failed" in line and "Broker transport failure" in line for line in logs), logs  # once per group
    kafka.down = False
    export.round()
    assert len(pushes.sent) == 1 and sum("works again" in line for line in logs) == 2


def test_a_group_that_cannot_be_measured_keeps_its_last_figures_and_an_age_not_read_its_last_age() -> None:
    kafka, pushes, logs = lagging(), Pushes(), []
    export = exporter(kafka, pushes, logs)
    export.round()
    kafka.loading = {"pushpipe-fanout"}
    kafka.marks[P(0)] = (0, 30)
    kafka.marks[Partition("push.retry", 0)] = (0, 9)
    export.round()
    body = pushes.sent[-1][2]
    assert 'job_name="fanout",partition="0",topic="push.requests"} 5.0' in body, "fanout's last figures"
    assert 'job_name="fanout",topic="push.requests"} 42.0' in body
    assert 'job_name="dispatch",partition="0",topic="push.retry"} 6.0' in body, "dispatch measured anew"
    kafka.loading, kafka.stamps = set(), {}  # fanout back, its lagging partition's record not read in time
    export.round()
    body = pushes.sent[-1][2]
    assert 'job_name="fanout",partition="0",topic="push.requests"} 20.0' in body
    assert 'job_name="fanout",topic="push.requests"} 42.0' in body, "the last age known"
    assert len(pushes.sent) == 3


def test_a_pushgateway_that_is_down_raises_nothing_and_is_logged_once() -> None:
    pushes, logs = Pushes(), []
    pushes.fail = True
    export = exporter(lagging(), pushes, logs)
    export.round()
    export.round()
    assert len(logs) == 1 and "push to http://127.0.0.1:1 failed" in logs[0] and "Connection refused" in logs[0]


def test_the_loop_outlives_rounds_that_raise() -> None:
    rounds: list[int] = []
    stop = threading.Event()

    class Broken(lag.Exporter):
        def round(self) -> None:
            rounds.append(1)
            if len(rounds) == 4:
                stop.set()
            if len(rounds) < 3:
                raise RuntimeError("a bug")

    logs: list[str] = []
    thread = threading.Thread(target=lag.run, args=(Broken(lagging(), {}, "http://127.0.0.1:1", logs.append), stop, 0.01))
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and len(rounds) == 4
    assert len(logs) == 2 and "RuntimeError: a bug" in logs[0] and "round works again" in logs[1], logs


def test_a_real_client_on_a_broker_that_is_down_ends_each_round_in_bounded_time() -> None:
    kafka = lag.ConfluentKafka.connect("127.0.0.1:1")  # nothing listens there
    kafka.timeout_s = 0.3
    pushes, logs = Pushes(), []
    export = lag.Exporter(kafka, {"fanout": [REQ]}, "http://127.0.0.1:1", logs.append, handler=pushes)
    try:
        began = time.monotonic()
        export.round()
        export.round()
        assert time.monotonic() - began < 5
    finally:
        kafka.consumer.close()
    assert pushes.sent == [] and len(logs) == 1 and "pushpipe-fanout" in logs[0]


def test_the_supervisor_starts_the_exporter(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(home=tmp_path)
    started: list[object] = []
    monkeypatch.setattr(supervisor.lag, "start", lambda s, log: started.append(s))
    monkeypatch.setattr(supervisor, "supervised", lambda settings: [])
    monkeypatch.setattr(supervisor, "_reap_children", lambda: None)
    (tmp_path / "run" / "supervisor").mkdir(parents=True)

    def stop(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(supervisor, "time", SimpleNamespace(sleep=stop, time=time.time, monotonic=time.monotonic, strftime=time.strftime))
    with pytest.raises(KeyboardInterrupt):
        supervisor.run(settings)
    assert started == [settings]


def test_the_topics_measured_are_those_each_job_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each job's build() with its Kafka sources recorded (and nothing of Flink's run)."""
    from pushpipe.jobs import analytics, dispatch, runtime
    from pushpipe.jobs.fanout import job as fanout

    class Anything:
        def __getattr__(self, name: str) -> Any:
            return self

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self

    read: dict[str, set[str]] = {}

    def source(env: Any, settings: Any, topics: str | list[str], group: str) -> Anything:
        read.setdefault(group, set()).update([topics] if isinstance(topics, str) else topics)
        return Anything()

    for name in ("environment", "kafka_sink", "sink_dlq", "discard", "keyed", "side_output"):
        monkeypatch.setattr(runtime, name, Anything())
    monkeypatch.setattr(runtime, "kafka_source", source)
    for name in ("dispatch_policy", "vendor_configs"):
        monkeypatch.setattr(dispatch, name, Anything())
    settings = load()
    for module in (fanout, dispatch, analytics):
        module.build(settings)
    measured = lag.sources(settings.topics)
    assert set(measured) == set(JOBS)
    assert read == {lag.group_of(job): set(topics) for job, topics in measured.items()}
