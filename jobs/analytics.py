"""Analytics job: results, receipts, device and preference events -> ClickHouse (lifecycle events and their rollups,
per-batch rows, receipts, devices) + Elasticsearch (messages with their counts; deliveries with their states;
devices and preferences, for diagnosis: sinks/device_docs.py).

    push.results  -> parse -┐
    push.receipts -> parse -┴-> key app|msg: MessageLifecycle (totals, each token's lifecycle) -┐
    device.events, device.feedback -> parse-devices ---------------------------------------------┤
    user.preferences -> parse-preferences --------------------------------------------------------┴-> 1 s windows -> bulk writes
Totals and lifecycles live in Flink state, so after a crash they are restored with the offsets they match.
Every count is idempotent, so replays do not double count: ReplacingMergeTree rows, lifecycle rows checked
before they are inserted (sinks/lifecycle.py), absolute message totals, deliveries versioned by attempt;
device_events keeps each event as often as it is read, and the device statistics take its latest and first.
Receipts come as groups of one message's (the gateway writes a ReceiptBatch per message of a body: few fat
records); each state counts once per token (a vendor's retry, or its receipt and the app's ack of the same
delivery); a receipt that arrives before its token's result waits for it.

Run: python -m pushpipe.jobs.analytics
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.state import MapState, MapStateDescriptor, ValueStateDescriptor
from pyflink.datastream.window import TumblingProcessingTimeWindows

from pushpipe import liveness
from pushpipe.config import Settings
from pushpipe.jobs import deadletters, lifecycle, runtime
from pushpipe.jobs.counting import StageCounters, counting_letters, reason_code
from pushpipe.jobs.fanout import devices
from pushpipe.schemas import codec, keys, results
from pushpipe.schemas.lifecycle_rows import Rows, rows_of
from pushpipe.sinks import clickhouse, elastic
from pushpipe.sinks import lifecycle as lifecycle_sink

Record = dict[str, Any]
Row = dict[str, Any]
JOB = "analytics"
WINDOW = Time.seconds(1)
SUMMARY_TTL = Time.days(7)  # results of a message arriving later than this start a new summary
RECEIPT_WAIT_MS = 10 * 60_000  # how long a receipt waits for its token's result before it counts without it
TIMER_GRAIN_MS = 60_000  # waiting receipts of a message share a timer per minute
# the latency of these states (from the state before: lifecycle.AFTER) as histograms per vendor, in ms: counters count
# whole numbers (StageCounters.observe); the bounds go from a simulator's milliseconds to a device offline for a day
LATENCY_HISTOGRAMS = {"delivered": "pushpipe_accepted_to_delivered_milliseconds", "opened": "pushpipe_delivered_to_opened_milliseconds"}
LATENCY_BUCKETS_MS = (100, 500, 1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 3_600_000, 86_400_000)

Summary = dict[str, Any]


@liveness.watched
class Parse(ProcessFunction):
    """DispatchResults (`name`), bad values to push.dlq."""

    def __init__(self, topic: str, name: str) -> None:
        self.topic, self.name = topic, name

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, f"parse-{self.topic}")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from counting_letters(self.counters, self.topic, deadletters.decode_or_dlq(JOB, self.topic, self.name, value))


@liveness.watched
class ParseReceipts(ProcessFunction):
    """ReceiptBatches (what the gateway writes) and single Receipts, as one group per (app, message) (a
    ReceiptsOf record), bad values to push.dlq."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, f"parse-{self.topic}")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        name = "ReceiptBatch" if codec.record_name(value) == "ReceiptBatch" else "Receipt"
        for item in counting_letters(self.counters, self.topic, deadletters.decode_or_dlq(JOB, self.topic, name, value)):
            yield from receipt_groups(item["receipts"] if name == "ReceiptBatch" else [item]) if isinstance(item, dict) else [item]


def receipt_groups(receipts: list[Record]) -> list[Record]:
    """Receipts grouped by message: {"app_id", "msg_id", "receipts"} each (a batch may mix messages)."""
    groups: dict[tuple[str, str], Record] = {}
    for r in receipts:
        groups.setdefault((r["app_id"], r["msg_id"]), {"app_id": r["app_id"], "msg_id": r["msg_id"], "receipts": []})["receipts"].append(r)
    return list(groups.values())


def is_receipts(record: Record) -> bool:
    """A group of receipts of one message (ParseReceipts), not a DispatchResult."""
    return "receipts" in record


def add_result(summary: Summary, result: dict[str, Any]) -> Summary:
    """The message totals after one more result (one not counted before: see MessageLifecycle)."""
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


def add_states(summary: Summary, rows: list[Row]) -> Summary:
    """The message totals after receipts' new states (delivered, opened, ...: each once per token)."""
    counts = dict(summary["counts"])
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {**summary, "counts": counts}


def empty_summary() -> Summary:
    return {"counts": {}, "vendors": [], "last_completed_at": 0}


def counted_key(result: Record) -> str:
    """What a message's totals remember having counted: a batch attempt's result (receipts are counted once per
    token and state, in the token's life)."""
    return f"{result['batch_id']}/{result['attempt']}"


class Written(NamedTuple):
    """What the writer gets: a DispatchResult, a group of one message's receipts (ParseReceipts), a DeviceEvent or
    a PreferenceEvent (with its `setting`), the message's totals after it (None for the last two) and the lifecycle
    rows of receipts it completed. A result's own rows are made by the writer (lifecycle.result_rows): carried
    through the window's state, a broadcast batch's thousand row dicts cost more than making them."""
    record: Record
    summary: Summary | None
    rows: list[Row]


def rows_written(record: Record, receipt_rows: list[Row]) -> Rows:
    """The lifecycle_events rows of what MessageLifecycle passed on: a result's own, then the receipts' it completed."""
    rows = lifecycle.result_rows(record) if not is_receipts(record) else Rows()
    rows.extend(rows_of(receipt_rows))
    return rows


class TokenLives:
    """Each token's TokenLife, stored as a plain tuple (state "lives"). A NamedTuple pickles with its class: 4.0 µs
    to pickle and 3.1 to unpickle one, a tuple 1.0 and 1.4 (measured), and a broadcast's token is written when
    accepted, then read and written again by its receipt. Versions before kept NamedTuples in state "tokens": a
    token not in "lives" is looked for there (an older send's late receipt), and those age out with their TTL.
    A version before reads only "tokens": going back to it, a receipt of a send made since waits RECEIPT_WAIT_MS and
    counts without the send's dimensions and latency, and a state it had counted can count again.

    A broadcast's receipts come seconds after its results, so the lives written lately are also kept here
    (`Recent`): a receipt finds its token's life without a call into RocksDB, which was a quarter of this job's
    Python time in a broadcast (py-spy). Every write still goes to the state, which a restore reads."""

    def __init__(self, lives: MapState[str, tuple[Any, ...]], older: MapState[str, tuple[Any, ...]], clock: Callable[[], int]) -> None:
        self.lives, self.older = lives, older
        self.recent = Recent(clock)
        self.key = ""  # the message whose state `lives` reaches: the key Flink set for this call (`keyed`)

    def keyed(self, key: str) -> None:
        self.key = key

    def get(self, token: str) -> lifecycle.TokenLife | None:
        life = self.recent.get((self.key, token))
        if life is not None:
            return life
        stored = self.lives.get(token)  # thread mode: get of a missing key answers None
        if stored is None:
            stored = self.older.get(token)
        return None if stored is None else lifecycle.TokenLife._make(stored)

    def put(self, token: str, life: lifecycle.TokenLife) -> None:
        self.lives.put(token, tuple(life))
        self.recent.put_all(self.key, {token: life})

    def put_all(self, lives: dict[str, lifecycle.TokenLife]) -> None:
        runtime.put_all(self.lives, {token: tuple(life) for token, life in lives.items()})
        self.recent.put_all(self.key, lives)


class Recent:
    """The token lives written lately, by (message key, token), in two generations of at most GENERATION each: a
    life first written goes into the young one, and when that is full it becomes the old one, and the old one is
    dropped. A life written again stays where it is (a receipt's update of a life in the old generation would
    otherwise fill the young one with the same tokens again, and push the rest of a broadcast out). A generation
    started more than MAX_AGE_MS ago is not read, so nothing here outlives the state's TTL (a write-through copy
    of it); at most 2 x GENERATION lives are held: ~350 bytes each with its token and pin (tracemalloc), ~70 MB."""

    GENERATION = 100_000
    MAX_AGE_MS = 3600_000

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.young: dict[tuple[str, str], lifecycle.TokenLife] = {}
        self.old: dict[tuple[str, str], lifecycle.TokenLife] = {}
        self.young_since = self.old_since = 0

    def get(self, key: tuple[str, str]) -> lifecycle.TokenLife | None:
        oldest = self.clock() - self.MAX_AGE_MS
        life = self.young.get(key) if self.young_since >= oldest else None
        if life is None and self.old_since >= oldest:
            life = self.old.get(key)
        return life

    def put_all(self, message: str, lives: dict[str, lifecycle.TokenLife]) -> None:
        now = self.clock()
        if len(self.young) >= self.GENERATION or self.young_since < now - self.MAX_AGE_MS:
            self.old, self.old_since = self.young, self.young_since
            self.young = {}
        if not self.young:
            self.young_since = now
        old, young = self.old, self.young
        for token, life in lives.items():
            key = (message, token)
            (old if key in old else young)[key] = life


@liveness.watched
class MessageLifecycle(KeyedProcessFunction):
    """Per (app, message): counts by outcome and vendors, so each ES write carries absolute totals, and the
    lifecycle of each of its tokens (jobs/lifecycle.py), so each state is a row with its dimensions and latency.

    The batch attempts already counted are a map state beside the totals, so a duplicate result (at-least-once
    delivery, or a replay after a restart: batch ids are deterministic) changes nothing; a receipt counts only
    for a state its token has not reached. A receipt that comes before its token's result waits in `waiting`."""

    clock = staticmethod(runtime.now_ms)

    def open(self, runtime_context: RuntimeContext) -> None:
        ttl = runtime.ttl(SUMMARY_TTL)

        def state(descriptor: Any) -> Any:
            descriptor.enable_time_to_live(ttl)
            return descriptor

        self.summary = runtime_context.get_state(state(ValueStateDescriptor("totals", Types.PICKLED_BYTE_ARRAY())))
        self.message = runtime_context.get_state(state(ValueStateDescriptor("message", Types.PICKLED_BYTE_ARRAY())))
        self.counted = runtime_context.get_map_state(state(MapStateDescriptor("counted", Types.STRING(), Types.BOOLEAN())))
        lives, older = (runtime_context.get_map_state(state(MapStateDescriptor(name, Types.STRING(), Types.PICKLED_BYTE_ARRAY())))
                        for name in ("lives", "tokens"))
        self.tokens = TokenLives(lives, older, self.clock)
        self.waiting = runtime_context.get_map_state(state(MapStateDescriptor("waiting", Types.STRING(), Types.PICKLED_BYTE_ARRAY())))
        self.waiting_count = runtime_context.get_state(state(ValueStateDescriptor("waiting-count", Types.INT())))
        self.unmatched = runtime_context.get_state(state(ValueStateDescriptor("unmatched", Types.INT())))
        self.counters = StageCounters(runtime_context, "message-totals")

    def process_element(self, record: Record, ctx: KeyedProcessFunction.Context) -> Iterator[Written]:
        self.tokens.keyed(message_key(record))
        summary = self.summary.value() or empty_summary()
        if is_receipts(record):
            rows = self.take_receipts(record["receipts"], ctx)
        else:
            key = counted_key(record)
            if self.counted.get(key) is not None:  # thread mode: get of a missing key answers None
                return
            self.counted.put(key, True)
            summary = add_result(summary, record)
            rows = self.take_result(record)
        summary = add_states(summary, [r for r in rows if r["state"] in lifecycle.AFTER])
        self.summary.update(summary)
        self.count(record)
        self.observe(rows)
        yield Written(record, summary, rows)

    def take_result(self, result: Record) -> list[Row]:
        """The rows of receipts that waited for this result (the writer makes the result's own: WriteWindow)."""
        rows: list[Row] = []
        lives = lifecycle.result_lives(result)
        if self.message.value() is None:
            self.message.update(lifecycle.message_of(result))
        if lives:
            if self.unmatched.value():  # tokens whose receipts were counted without them: keep what they reached
                lives = {t: life._replace(times={**known.times, **life.times}) if (known := self.tokens.get(t)) else life
                         for t, life in lives.items()}
            self.tokens.put_all(lives)
            if self.waiting_count.value():
                rows += self.settle_waiting(lives)
        return rows

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Written]:
        """Receipts whose tokens' results have not come in RECEIPT_WAIT_MS (a send older than this job's state, or
        none of ours): counted without the send's dimensions, so nothing received is left out."""
        self.tokens.keyed(ctx.get_current_key())
        overdue = {token: receipts for token, receipts in list(self.waiting.items())
                   if min(r["received_at"] or r["ts"] for r in receipts) + RECEIPT_WAIT_MS <= timestamp}
        if not overdue:
            if self.waiting_count.value():  # a gateway clock ahead of this one: look again
                ctx.timer_service().register_processing_time_timer(timestamp + TIMER_GRAIN_MS)
            return
        unknown = {token: lifecycle.TokenLife(receipts[0]["vendor"], "", "", "", {}) for token, receipts in overdue.items()}
        rows = self.settle_waiting(unknown)
        self.unmatched.update((self.unmatched.value() or 0) + len(overdue))
        summary = add_states(self.summary.value() or empty_summary(), rows)
        self.summary.update(summary)
        self.observe(rows)
        if self.waiting_count.value():  # others not overdue yet: look again
            ctx.timer_service().register_processing_time_timer(timestamp + TIMER_GRAIN_MS)
        first = next(iter(overdue.values()))[0]
        yield Written({"app_id": first["app_id"], "msg_id": first["msg_id"], "receipts": []}, summary, rows)  # written before

    def settle_waiting(self, lives: dict[str, lifecycle.TokenLife]) -> list[Row]:
        """The rows of receipts that came before their tokens' results."""
        rows, settled = [], 0
        for token, life in lives.items():
            waiting = self.waiting.get(token)
            if waiting is None:
                continue
            for receipt in sorted(waiting, key=lifecycle.receipt_time):
                life, new_row = lifecycle.add_receipt(life, receipt, self.message.value() or lifecycle.UNKNOWN_MESSAGE)
                rows += [new_row] if new_row else []
            self.tokens.put(token, life)
            self.waiting.remove(token)
            settled += len(waiting)
        self.waiting_count.update(self.waiting_count.value() - settled)
        return rows

    def take_receipts(self, receipts: list[Record], ctx: KeyedProcessFunction.Context) -> list[Row]:
        message = self.message.value() or lifecycle.UNKNOWN_MESSAGE
        rows: list[Row] = []
        waited = 0
        changed: dict[str, lifecycle.TokenLife] = {}  # written back at once: one call into the JVM
        for receipt in receipts:
            token = receipt["token"]
            life = changed.get(token) or self.tokens.get(token)
            if life is None:  # before its token's result: kept until it comes, or for RECEIPT_WAIT_MS
                self.waiting.put(token, [*(self.waiting.get(token) or []), receipt])
                waited += 1
                continue
            life, new_row = lifecycle.add_receipt(life, receipt, message)
            if new_row is not None:  # else a state the token reached before (a vendor's retry, an app's ack too)
                changed[token] = life
                rows.append(new_row)
        if changed:
            self.tokens.put_all(changed)
        if waited:
            self.waiting_count.update((self.waiting_count.value() or 0) + waited)
            due = self.clock() + RECEIPT_WAIT_MS
            ctx.timer_service().register_processing_time_timer(due - due % TIMER_GRAIN_MS + TIMER_GRAIN_MS)  # one per minute
        return rows

    def count(self, record: Record) -> None:
        """Receipts by kind and source; tokens by vendor, outcome and reason code (counted once, like the totals).
        Summed first: each counter increment is a call into the JVM."""
        if is_receipts(record):
            for (kind, source), n in Counter((r["kind"], r["source"]) for r in record["receipts"]).items():
                self.counters.count("pushpipe_receipts", n, kind=kind, source=source)
            return
        tokens: Counter[tuple[str, str, str]] = Counter()
        for outcome in record["outcomes"]:
            tokens[outcome["outcome"], reason_code(outcome["code"]), str(outcome["final"]).lower()] += results.weight(outcome)
        tokens["accepted", "", "true"] += results.grouped_count(record)
        for (outcome_, code, final), n in tokens.items():
            self.counters.count("pushpipe_tokens", n, vendor=record["vendor"], outcome=outcome_, code=code, final=final)

    def observe(self, rows: list[Row]) -> None:
        """The latency of each new delivered and opened state whose state before is known (each once per token, as the rows)."""
        latencies: dict[tuple[str, str], list[int]] = {}
        for r in rows:
            name = LATENCY_HISTOGRAMS.get(r["state"])
            if name and r["latency_ms"] >= 0:
                latencies.setdefault((name, r["vendor"]), []).append(r["latency_ms"])
        for (name, vendor), values in latencies.items():
            self.counters.observe(name, values, LATENCY_BUCKETS_MS, vendor=vendor)


@liveness.watched
class ParseDevices(ProcessFunction):
    """DeviceEvents for device statistics. Fan-out owns these topics' dead letters: a bad value is skipped
    here (counted), a tombstone is the deletion of its device."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, "parse-devices")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Written]:
        for item in deadletters.decode_or_tombstone(JOB, ",".join(self.topics), "DeviceEvent", value):
            if isinstance(item, deadletters.Tombstone):  # at the record's Kafka time: the same on a replay
                item = deleted_device(item, ctx.timestamp() or runtime.now_ms())
            if isinstance(item, dict) and counts_for_devices(item) and not devices.event_problem(item):  # fan-out dead-letters those
                yield Written(item, None, [])
            else:
                self.counters.count("pushpipe_device_events_skipped")


@liveness.watched
class ParsePreferences(ProcessFunction):
    """PreferenceEvents, for the pins' preference documents, each with the setting its Kafka key names; a tombstone
    is that setting's deletion. Fan-out owns this topic's dead letters: a bad value is skipped here (counted)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, "parse-preferences")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Written]:
        for item in deadletters.decode_or_tombstone(JOB, self.topic, "PreferenceEvent", value):
            event = (deleted_preference(item) if isinstance(item, deadletters.Tombstone)
                     else with_setting(item) if isinstance(item, dict) and well_formed(item) else None)
            if event is not None:
                yield Written(event, None, [])
            else:
                self.counters.count("pushpipe_preference_events_skipped")


def well_formed(event: Record) -> bool:
    """Ids fan-out takes (it dead-letters the others): only those make preference documents."""
    try:
        keys.check_app_id(event["app_id"])
        keys.check_pin(event["pin"])
    except keys.InvalidId:
        return False
    return True


def with_setting(event: Record) -> Record:
    """The event with the setting its Kafka key names (keys.preference_key: app|pin|setting)."""
    return {**event, "setting": keys.preference_key(event).split(keys.SEP, 2)[2]}


def deleted_preference(dead: deadletters.Tombstone) -> Record | None:
    """The deletion of the setting a user.preferences tombstone (key app|pin|setting) stands for."""
    try:
        app_id, pin, setting = keys.parse_preference_key(dead.key)
    except keys.InvalidId:
        return None
    return {"app_id": app_id, "pin": pin, "setting": setting, "deleted": True} if setting else None


def is_preference(record: Record) -> bool:
    return "setting" in record


def deleted_device(dead: deadletters.Tombstone, ts: int) -> Record | None:
    """The deregistration a device.events tombstone (key app|token) stands for."""
    app_id, _, token = dead.key.partition(keys.SEP)
    if not token:
        return None
    return {"app_id": app_id, "token": token, "kind": "deregister", "reason": "tombstone", "ts": ts}


def counts_for_devices(event: Record) -> bool:
    """Not fan-out's own notes on device.feedback: a token moved to another pin (its bind is on device.events)."""
    return event.get("reason") != "moved"


def message_key(result: Record) -> str:
    return keys.message_key(result["app_id"], result["msg_id"])


@liveness.watched
class WriteWindow(ProcessWindowFunction):
    """Writes one window to ClickHouse and Elasticsearch; raising makes Flink replay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        runtime.quiet_logs()
        self.ch = clickhouse.connect(self.settings)
        self.es = elastic.connect(self.settings)
        elastic.ensure_indices(self.es, self.settings)
        db = self.settings.clickhouse_database
        self.tables = {"results": f"{db}.dispatch_results", "receipts": f"{db}.receipts", "devices": f"{db}.device_events"}
        self.lifecycle = lifecycle_sink.LifecycleWriter(self.ch, db, runtime.now_ms())
        self.beside = ThreadPoolExecutor(1, thread_name_prefix="write-elasticsearch")

    def process(self, key: int, context: ProcessWindowFunction.Context, elements: Iterable[Written]) -> Iterator[int]:
        """ClickHouse and Elasticsearch side by side (each waits on its server, not on Python); raises if either failed."""
        written = list(elements)
        messages = [(w.record, w.summary, w.rows) for w in written if w.summary is not None]
        rows = Rows()
        for record, _, receipt_rows in messages:
            rows.extend(rows_written(record, receipt_rows))
        people = [w.record for w in written if w.summary is None]  # device and preference events
        actions = elastic.window_actions(self.settings, [(record, summary) for record, summary, _ in messages], people)
        to_elasticsearch = self.beside.submit(elastic.write, self.es, actions)
        self.write_clickhouse(written, messages, rows)
        to_elasticsearch.result()
        yield len(written)

    def write_clickhouse(self, written: list[Written], messages: list[tuple[Record, Any, list[Row]]], rows: Rows) -> None:
        self.ch.insert(self.tables["devices"], [lifecycle_sink.device_row(w.record) for w in written
                                                if w.summary is None and not is_preference(w.record)])
        self.ch.insert(self.tables["results"], [clickhouse.result_row(record) for record, _, _ in messages if not is_receipts(record)])
        self.ch.insert_columns(self.tables["receipts"], clickhouse.receipt_columns([receipt for record, _, _ in messages if is_receipts(record)
                                                                                  for receipt in record["receipts"]]))
        self.lifecycle.insert(rows)

    def close(self) -> None:
        self.beside.shutdown()
        self.ch.close()
        self.es.close()


def build(settings: Settings) -> Any:
    # keyed totals and lifecycles over many messages: state calls stay in the JVM (thread mode), and RocksDB's
    # incremental checkpoints copy only what changed (the heap backend copied every token's life every 5 s)
    env = runtime.environment(settings, JOB, runtime.ROCKSDB_STATE, mode="thread")
    topics, group = settings.topics, f"pushpipe-{JOB}"
    results_in = (runtime.kafka_source(env, settings, topics.results, group)
                  .process(Parse(topics.results, "DispatchResult")).name("parse-results").uid("parse-results"))
    receipts_in = (runtime.kafka_source(env, settings, topics.receipts, group)
                   .process(ParseReceipts(topics.receipts)).name("parse-receipts").uid("parse-receipts"))
    for parsed in (results_in, receipts_in):
        runtime.sink_dlq(parsed, settings)
    device_topics = [topics.device_events, topics.device_feedback]
    devices_in = (runtime.kafka_source(env, settings, device_topics, group)
                  .process(ParseDevices(device_topics), output_type=Types.PICKLED_BYTE_ARRAY())
                  .name("parse-devices").uid("parse-devices"))
    preferences_in = (runtime.kafka_source(env, settings, topics.preferences, group)
                      .process(ParsePreferences(topics.preferences), output_type=Types.PICKLED_BYTE_ARRAY())
                      .name("parse-preferences").uid("parse-preferences"))
    messages = (runtime.keyed(message_key, results_in, receipts_in)
                .process(MessageLifecycle(), output_type=Types.PICKLED_BYTE_ARRAY())
                .name("message-totals").uid("message-totals"))
    written = (
        runtime.keyed(lambda written: 0, messages, devices_in, preferences_in, key_type=Types.INT())  # one writer: few, fat bulk writes
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
