"""Analytics job: push.results and push.receipts -> ClickHouse (per-batch rows, receipts, per-minute views) +
Elasticsearch (messages with their accepted, delivered, opened... counts; deliveries).

    push.results  -> parse -┐
    push.receipts -> parse -┴-> key app|msg: message totals (state) -> 1 s windows -> bulk writes
Totals live in Flink state, so after a crash they are restored with the offsets they match;
results are written in one-second processing-time windows, and both sinks are idempotent
(ReplacingMergeTree rows; absolute message totals and deliveries versioned by attempt), so replays
do not double count. A receipt is counted once per receipt_id (a vendor that retries a callback sends
the same receipt again), and one that arrives before its message's results still counts for it.

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
from pushpipe.jobs.counting import StageCounters, counting_letters, reason_code
from pushpipe.schemas import keys, results
from pushpipe.sinks import clickhouse, elastic

Record = dict[str, Any]
JOB = "analytics"
WINDOW = Time.seconds(1)
SUMMARY_TTL = Time.days(7)  # results of a message arriving later than this start a new summary

Summary = dict[str, Any]


@liveness.watched
class Parse(ProcessFunction):
    """DispatchResults or Receipts (`name`), bad values to push.dlq."""

    def __init__(self, topic: str, name: str) -> None:
        self.topic, self.name = topic, name

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, f"parse-{self.topic}")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from counting_letters(self.counters, self.topic, deadletters.decode_or_dlq(JOB, self.topic, self.name, value))


def add_receipt(summary: Summary, receipt: Record) -> Summary:
    """The message totals after one more receipt: its kind counted (delivered, opened, clicked, ...)."""
    counts = dict(summary["counts"])
    counts[receipt["kind"]] = counts.get(receipt["kind"], 0) + 1
    return {**summary, "counts": counts}


def is_receipt(record: Record) -> bool:
    return "receipt_id" in record


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


def counted_key(record: Record) -> str:
    """What a message's totals remember having counted: a batch attempt's result, or a receipt."""
    return f"receipt:{record['receipt_id']}" if is_receipt(record) else f"{record['batch_id']}/{record['attempt']}"


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
        self.counters = StageCounters(runtime_context, "message-totals")

    def process_element(self, record: Record, ctx: KeyedProcessFunction.Context) -> Iterator[tuple[Record, Record]]:
        key = counted_key(record)
        if self.counted.get(key) is not None:  # thread mode: get of a missing key answers None
            return
        self.counted.put(key, True)
        summary = self.summary.value() or empty_summary()
        summary = add_receipt(summary, record) if is_receipt(record) else add_result(summary, record)
        self.summary.update(summary)
        self.count(record)
        yield record, summary

    def count(self, record: Record) -> None:
        """Receipts by kind and source; tokens by vendor, outcome and reason code (counted once, like the totals)."""
        if is_receipt(record):
            self.counters.count("pushpipe_receipts", kind=record["kind"], source=record["source"])
            return
        for outcome in record["outcomes"]:
            self.counters.count("pushpipe_tokens", results.weight(outcome), vendor=record["vendor"], outcome=outcome["outcome"],
                                code=reason_code(outcome["code"]), final=str(outcome["final"]).lower())
        self.counters.count("pushpipe_tokens", results.grouped_count(record), vendor=record["vendor"], outcome="accepted",
                            code="", final="true")


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
        self.receipts_table = f"{self.settings.clickhouse_database}.receipts"

    def process(self, key: int, context: ProcessWindowFunction.Context, elements: Iterable[tuple[Record, Record]]) -> Iterator[int]:
        pairs = list(elements)
        receipts = [record for record, _ in pairs if is_receipt(record)]
        self.ch.insert(self.table, [clickhouse.result_row(record) for record, _ in pairs if not is_receipt(record)])
        self.ch.insert(self.receipts_table, [clickhouse.receipt_row(receipt) for receipt in receipts])
        elastic.write(self.es, elastic.window_actions(self.settings, pairs))
        yield len(pairs)

    def close(self) -> None:
        self.ch.close()
        self.es.close()


def build(settings: Settings) -> Any:
    env = runtime.environment(settings, JOB, mode="thread")  # keyed totals over many messages: state calls stay in the JVM
    topics, group = settings.topics, f"pushpipe-{JOB}"
    results_in = (runtime.kafka_source(env, settings, topics.results, group)
                  .process(Parse(topics.results, "DispatchResult")).name("parse-results").uid("parse-results"))
    receipts_in = (runtime.kafka_source(env, settings, topics.receipts, group)
                   .process(Parse(topics.receipts, "Receipt")).name("parse-receipts").uid("parse-receipts"))
    for parsed in (results_in, receipts_in):
        runtime.sink_dlq(parsed, settings)
    written = (
        results_in.union(receipts_in).key_by(message_key, key_type=Types.STRING())
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
