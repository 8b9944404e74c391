"""Analytics job: push.results -> ClickHouse (per-batch rows, per-minute view) + Elasticsearch (messages, deliveries).

    push.results -> parse -> key msg_id: message totals (state) -> 1 s windows -> bulk writes
Totals live in Flink state, so after a crash they are restored with the offsets they match;
results are written in one-second processing-time windows, and both sinks are idempotent
(ReplacingMergeTree rows; absolute message totals and deliveries versioned by attempt), so replays
do not double count.

Run: python -m pushpipe.jobs.analytics
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor
from pyflink.datastream.window import TumblingProcessingTimeWindows

from pushpipe import liveness
from pushpipe.config import Settings
from pushpipe.jobs import deadletters, runtime
from pushpipe.schemas import keys, results
from pushpipe.sinks import clickhouse, elastic

Record = dict[str, Any]
JOB = "analytics"
WINDOW = Time.seconds(1)
SUMMARY_TTL = Time.days(7)  # results of a message arriving later than this start a new summary

Summary = dict[str, Any]


@liveness.watched
class ParseResults(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from deadletters.decode_or_dlq(JOB, self.topic, "DispatchResult", value)


def add_result(summary: Summary, result: dict[str, Any]) -> Summary:
    """The message totals after one more result (one not counted before: see MessageTotals)."""
    counts = dict(summary["counts"])
    for outcome in result["outcomes"]:
        key = outcome["outcome"] if outcome["final"] else "retrying"
        counts[key] = counts.get(key, 0) + results.weight(outcome)
    grouped = results.grouped_count(result)
    if grouped:
        counts["accepted"] = counts.get("accepted", 0) + grouped
    if result["attempt"] > 0:  # these tokens were counted as retrying by an earlier attempt
        counts["retrying"] = max(0, counts.get("retrying", 0) - len(result["outcomes"]) - grouped)
    vendors = summary["vendors"]
    if result["vendor"] not in vendors and result["vendor"] != results.NO_VENDOR:
        vendors = sorted([*vendors, result["vendor"]])
    return {"counts": counts, "vendors": vendors, "last_completed_at": max(summary["last_completed_at"], result["completed_at"])}


def empty_summary() -> Summary:
    return {"counts": {}, "vendors": [], "last_completed_at": 0}


def counted_key(result: dict[str, Any]) -> str:
    return f"{result['batch_id']}/{result['attempt']}"


@liveness.watched
class MessageTotals(KeyedProcessFunction):
    """Per (app, message): counts by outcome and vendors, so each ES write carries absolute totals.

    The batch attempts already counted are a map state beside the totals, so a duplicate result (at-least-once
    delivery, or a replay after a restart: batch ids are deterministic) changes nothing, and each result costs
    one lookup, however many the message has (a set kept in the totals was copied with every result: quadratic)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        ttl = StateTtlConfig.new_builder(SUMMARY_TTL).build()
        summary = ValueStateDescriptor("totals", Types.PICKLED_BYTE_ARRAY())
        summary.enable_time_to_live(ttl)
        self.summary = runtime_context.get_state(summary)
        counted = MapStateDescriptor("counted", Types.STRING(), Types.BOOLEAN())
        counted.enable_time_to_live(ttl)
        self.counted = runtime_context.get_map_state(counted)

    def process_element(self, result: Record, ctx: KeyedProcessFunction.Context) -> Iterator[tuple[Record, Record]]:
        key = counted_key(result)
        if self.counted.get(key) is not None:  # thread mode: get of a missing key answers None
            return
        self.counted.put(key, True)
        summary = add_result(self.summary.value() or empty_summary(), result)
        self.summary.update(summary)
        yield result, summary


def message_key(result: Record) -> str:
    return keys.message_key(result["app_id"], result["msg_id"])


@liveness.watched
class WriteWindow(ProcessWindowFunction):
    """Writes one window of results to ClickHouse and Elasticsearch; raising makes Flink replay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.ch = clickhouse.connect(self.settings)
        self.es = elastic.connect(self.settings)
        elastic.ensure_indices(self.es, self.settings)
        self.table = f"{self.settings.clickhouse_database}.dispatch_results"

    def process(self, key: int, context: ProcessWindowFunction.Context, elements: Iterable[tuple[Record, Record]]) -> Iterator[int]:
        pairs = list(elements)
        self.ch.insert(self.table, [clickhouse.result_row(result) for result, _ in pairs])
        elastic.write(self.es, elastic.window_actions(self.settings, pairs))
        yield len(pairs)

    def close(self) -> None:
        self.ch.close()
        self.es.close()


def build(settings: Settings) -> Any:
    env = runtime.environment(settings, JOB, mode="thread")  # keyed totals over many messages: state calls stay in the JVM
    topic = settings.topics.results
    parsed = runtime.kafka_source(env, settings, topic, f"pushpipe-{JOB}").process(ParseResults(topic)).name("parse-results").uid("parse-results")
    runtime.sink_dlq(parsed, settings)
    written = (
        parsed.key_by(message_key, key_type=Types.STRING())
        .process(MessageTotals())
        .name("message-totals").uid("message-totals")
        .key_by(lambda pair: 0, key_type=Types.INT())  # one writer: few, fat bulk writes
        .window(TumblingProcessingTimeWindows.of(WINDOW))
        .process(WriteWindow(settings), output_type=Types.INT())
        .name("write-clickhouse-elasticsearch").uid("write-clickhouse-elasticsearch")
    )
    runtime.discard(written)
    return env


if __name__ == "__main__":
    # through the imported module, so Flink pickles this module's functions by reference, not by value
    from pushpipe.jobs import analytics

    runtime.run(analytics.build, JOB)
