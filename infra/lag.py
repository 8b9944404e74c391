"""Kafka consumer lag of each job, per topic and partition, and the age of the oldest record it has not processed,
measured from Kafka itself and pushed to the Pushgateway by the supervisor (a thread of its own, every INTERVAL_S).

The jobs' Kafka sources commit their group's offsets (pushpipe-<job>) on each checkpoint (jobs/runtime.py). For each
partition of the topics a job reads: lag = high watermark - committed offset, from the low watermark when the group
has committed nothing there yet or retention deleted what it had not read. The record at the committed offset of a
lagging partition is the oldest one not processed (as of the last checkpoint): a consumer that joins no group and
commits nothing reads that one record, and its timestamp gives the age. Unlike Flink's own lag metrics, these
figures go on while a job is down.

Per group and round: one metadata call, one committed-offsets call, two watermark calls, one small fetch of the
lagging partitions' first records; each bounded by TIMEOUT_S. A failure is logged once, retried next round.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # exported without __all__
from prometheus_client.exposition import default_handler, push_to_gateway
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pushpipe.config import Settings, Topics, masked_url

INTERVAL_S = 5.0  # between rounds: Flink's push interval and Prometheus's scrape interval
TIMEOUT_S = 2.0  # per Kafka call, and for one group's fetch
PUSH_TIMEOUT_S = 5.0
PUSH_JOB = "pushpipe-lag"  # the Pushgateway group (the series' job label); JobDown fires when it stops pushing
LAG = "pushpipe_kafka_consumer_lag_records"
AGE = "pushpipe_kafka_oldest_unprocessed_age_seconds"
EARLIEST, LATEST = OffsetSpec.earliest(), OffsetSpec.latest()  # type: ignore[no-untyped-call]


def sources(topics: Topics) -> dict[str, tuple[str, ...]]:
    """The topics each job's Kafka sources read (jobs/fanout/job.py, jobs/dispatch.py, jobs/analytics.py)."""
    devices = (topics.device_events, topics.device_feedback)
    return {"fanout": (topics.requests, *devices, topics.preferences),
            "dispatch": (*topics.lanes, topics.retry),
            "analytics": (topics.results, topics.receipts, *devices, topics.preferences)}


def group_of(job: str) -> str:
    return f"pushpipe-{job}"


class Partition(NamedTuple):
    topic: str
    partition: int


class Kafka(Protocol):
    """What the measurement asks of Kafka (ConfluentKafka; fakes in tests)."""

    def partitions(self, topics: Sequence[str]) -> list[Partition]:
        """The partitions of those topics that exist."""

    def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
        """The group's committed offset of each partition, None where it has none."""

    def watermarks(self, partitions: Sequence[Partition]) -> dict[Partition, tuple[int, int]]:
        """(low, high) of each partition."""

    def timestamps(self, offsets: Mapping[Partition, int]) -> dict[Partition, float]:
        """The timestamp (Unix seconds) of the first record at or after each offset; those read in time."""


@dataclass(frozen=True)
class GroupLag:
    job: str
    group: str
    lag: dict[Partition, int]  # records not committed yet
    age_s: dict[str, float]  # per topic: the oldest unprocessed record's age (at least), 0 when caught up; absent: unknown


def measure(kafka: Kafka, job: str, topics: Sequence[str], now: float) -> GroupLag:
    """One job's lag per partition and oldest unprocessed age per topic, at `now` (Unix seconds)."""
    group = group_of(job)
    partitions = kafka.partitions(topics)
    committed = kafka.committed(group, partitions) if partitions else {}
    marks = kafka.watermarks(partitions) if partitions else {}
    lag: dict[Partition, int] = {}
    heads: dict[Partition, int] = {}  # lagging partitions: the offset of their oldest unprocessed record
    for p in partitions:
        low, high = marks[p]
        offset = committed.get(p)
        start = low if offset is None or offset < low else offset
        lag[p] = max(0, high - start)
        if lag[p]:
            heads[p] = start
    stamps = kafka.timestamps(heads) if heads else {}
    ages: dict[str, float] = {}
    for topic in topics:
        lagging = [p for p in heads if p.topic == topic]
        read = [stamps[p] for p in lagging if p in stamps]
        if not lagging:
            ages[topic] = 0.0
        elif read:  # partitions not read in time could only make it older
            ages[topic] = max(0.0, now - min(read))
    return GroupLag(job, group, lag, ages)


class ConfluentKafka:
    """Kafka through confluent_kafka: an AdminClient for offsets, a Consumer that only assigns (no group join, no commit)."""

    def __init__(self, admin: Any, consumer: Any, timeout_s: float = TIMEOUT_S) -> None:
        self.admin, self.consumer, self.timeout_s = admin, consumer, timeout_s

    @classmethod
    def connect(cls, bootstrap: str) -> ConfluentKafka:
        quiet: dict[str, str | int | float | bool] = {
            "bootstrap.servers": bootstrap, "socket.timeout.ms": 3000, "socket.connection.setup.timeout.ms": 3000,
            "log_level": 0}  # librdkafka would log every refused connection while the broker is down
        consumer = Consumer({**quiet, "group.id": "pushpipe-lag-probe",  # required, never joined: assign() only
                             "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                             # one small fetch: a record batch or two per partition, not the librdkafka prefetch
                             "max.partition.fetch.bytes": 65536, "fetch.max.bytes": 1048576, "queued.min.messages": 1,
                             "queued.max.messages.kbytes": 1024, "fetch.wait.max.ms": 100})
        return cls(AdminClient(quiet), consumer)

    def partitions(self, topics: Sequence[str]) -> list[Partition]:
        found = self.admin.list_topics(timeout=self.timeout_s).topics
        return [Partition(t, p) for t in topics if t in found and found[t].error is None for p in sorted(found[t].partitions)]

    def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(p.topic, p.partition) for p in partitions])]
        answer = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)[group].result(timeout=self.timeout_s + 1)
        offsets: dict[Partition, int | None] = {}
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise KafkaException(tp.error)
            offsets[Partition(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None  # OFFSET_INVALID: none
        return offsets

    def watermarks(self, partitions: Sequence[Partition]) -> dict[Partition, tuple[int, int]]:
        low, high = self._offsets(partitions, EARLIEST), self._offsets(partitions, LATEST)
        return {p: (low[p], high[p]) for p in partitions}

    def _offsets(self, partitions: Sequence[Partition], spec: OffsetSpec) -> dict[Partition, int]:
        futures = self.admin.list_offsets({TopicPartition(p.topic, p.partition): spec for p in partitions}, request_timeout=self.timeout_s)
        return {Partition(tp.topic, tp.partition): future.result(timeout=self.timeout_s + 1).offset for tp, future in futures.items()}

    def timestamps(self, offsets: Mapping[Partition, int]) -> dict[Partition, float]:
        found: dict[Partition, float] = {}
        deadline = time.monotonic() + self.timeout_s
        self.consumer.assign([TopicPartition(p.topic, p.partition, offset) for p, offset in offsets.items()])
        try:
            while len(found) < len(offsets) and (left := deadline - time.monotonic()) > 0:
                for message in self.consumer.consume(num_messages=len(offsets), timeout=min(left, 0.5)):
                    p = Partition(message.topic(), message.partition())
                    kind, ms = message.timestamp()
                    if (message.error() is None and p in offsets and p not in found and message.offset() >= offsets[p]
                            and kind != TIMESTAMP_NOT_AVAILABLE):
                        found[p] = ms / 1000
        finally:
            self.consumer.unassign()
        return found


class Figures(Collector):
    """The latest reading of each group as the two gauges."""

    def __init__(self, readings: Iterable[GroupLag]) -> None:
        self.readings = list(readings)

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(LAG, "Records of the partition that the job's consumer group has not committed (processed as of its last "
                                     "checkpoint)", labels=["job_name", "group", "topic", "partition"])
        age = GaugeMetricFamily(AGE, "Age of the oldest record of the topic that the job's consumer group has not committed, 0 when "
                                     "caught up", labels=["job_name", "group", "topic"])
        for reading in self.readings:
            for p, records in sorted(reading.lag.items()):
                lag.add_metric([reading.job, reading.group, p.topic, str(p.partition)], records)
            for topic, seconds in sorted(reading.age_s.items()):
                age.add_metric([reading.job, reading.group, topic], seconds)
        yield lag
        yield age


class Exporter:
    """Measures every job's group and pushes the figures. A group that cannot be measured keeps its last figures; a
    round that measures none pushes nothing, so the group's push_time_seconds goes stale. Each failure is logged
    once, and its end."""

    def __init__(self, kafka: Kafka, jobs: Mapping[str, Sequence[str]], pushgateway_url: str, log: Callable[[str], None],
                 handler: Callable[..., Callable[[], None]] = default_handler, clock: Callable[[], float] = time.time) -> None:
        self.kafka, self.jobs, self.pushgateway_url, self.log = kafka, jobs, pushgateway_url, log
        self.handler, self.clock = handler, clock
        self.last: dict[str, GroupLag] = {}
        self.failing: set[str] = set()

    def round(self) -> None:
        now = self.clock()
        measured = 0
        for job, topics in self.jobs.items():
            what = f"Kafka lag of {group_of(job)}"
            try:
                reading = measure(self.kafka, job, topics, now)
            except Exception as err:  # Kafka down or slow, a coordinator loading: next round
                self.failed(what, err)
                continue
            before = self.last.get(job)
            ages = {**before.age_s, **reading.age_s} if before else reading.age_s  # an age not read in time: the last one
            self.last[job] = GroupLag(job, reading.group, reading.lag, ages)
            self.works(what)
            measured += 1
        if not measured:
            return
        try:
            push_to_gateway(self.pushgateway_url, job=PUSH_JOB, registry=Figures(self.last.values()), timeout=PUSH_TIMEOUT_S,
                            handler=self.handler)
        except Exception as err:  # the Pushgateway down: next round
            self.failed(f"push to {masked_url(self.pushgateway_url)}", err)
            return
        self.works(f"push to {masked_url(self.pushgateway_url)}")

    def failed(self, what: str, err: Exception) -> None:
        if what not in self.failing:
            self.failing.add(what)
            self.log(f"lag: {what} failed, retrying every {INTERVAL_S:.0f}s: {type(err).__name__}: {masked_url(str(err))}")

    def works(self, what: str) -> None:
        if what in self.failing:
            self.failing.discard(what)
            self.log(f"lag: {what} works again")


def run(exporter: Exporter, stop: threading.Event, interval_s: float = INTERVAL_S) -> None:
    """A round every interval_s until stop is set; nothing a round raises ends the loop."""
    while not stop.is_set():
        began = time.monotonic()
        try:
            exporter.round()
            exporter.works("round")
        except Exception as err:  # a bug in a round must not end the measurement, nor the supervisor
            exporter.failed("round", err)
        stop.wait(max(interval_s / 5, interval_s - (time.monotonic() - began)))  # a pause even after a slow round


def start(settings: Settings, log: Callable[[str], None]) -> threading.Event:
    """Run the exporter in a daemon thread; set the returned event to stop it."""
    exporter = Exporter(ConfluentKafka.connect(settings.kafka_bootstrap), sources(settings.topics), settings.pushgateway_url, log)
    stop = threading.Event()
    threading.Thread(target=run, args=(exporter, stop), name="lag", daemon=True).start()
    return stop
