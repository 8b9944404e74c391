"""The lifecycle of each push on each device in the analytics job (jobs/lifecycle.py, MessageLifecycle), and
how it is written: once to ClickHouse (sinks/lifecycle.py), and read back as the receipt states of deliveries (sinks/receipt_states.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flink_fakes import Harness, Mapped
from pushpipe.config import Settings
from pushpipe.jobs import analytics, lifecycle
from pushpipe.jobs.deadletters import DLQ
from pushpipe.schemas import codec, profiles
from pushpipe.schemas.lifecycle_rows import Rows
from pushpipe.sinks import elastic, receipt_states
from pushpipe.sinks.lifecycle import LifecycleWriter

XIAOMI_13 = profiles.encode({"brand": "xiaomi", "model": "2211133C", "os_version": "13", "app_version": "5.2.0"})


def result(outcomes: list[tuple[str, str]], batch: str = "b1", attempt: int = 0, final: bool = True) -> dict[str, Any]:
    return {"batch_id": batch, "msg_id": "m1", "app_id": "a", "vendor": "xiaomi", "priority": "high",
            "category": "marketing", "campaign": "spring", "attempt": attempt, "environment": "production",
            "outcomes": [{"token": t, "outcome": o, "code": "" if o == "accepted" else "20301", "reason": "", "vendor_msg_id": "",
                          "pin": f"p-{t}", "exit": "xiaomi", "final": final, "count": 0, "profile": XIAOMI_13} for t, o in outcomes],
            "accepted": [], "requested_at": 1_000, "due_at": 2_000, "sent_at": 2_500, "completed_at": 3_000}


def receipt(token: str, kind: str, ts: int, source: str = "vendor", n: int = 0) -> dict[str, Any]:
    return {"receipt_id": f"{token}-{kind}-{source}-{n}", "msg_id": "m1", "app_id": "a", "vendor": "xiaomi" if source == "vendor" else "",
            "token": token, "kind": kind, "code": "1", "source": source, "ts": ts, "received_at": ts + 5}


def as_input(record: dict[str, Any]) -> dict[str, Any]:
    """A result as it is, a receipt as ParseReceipts passes it on: a group of one message's receipts."""
    return analytics.receipt_groups([record])[0] if "receipt_id" in record else record


def run(*records: dict[str, Any]) -> list[analytics.Written]:
    harness = Harness(analytics.MessageLifecycle())
    return [w for r in records for w in harness.process(as_input(r), key="a|m1")]


def states(written: list[analytics.Written]) -> list[tuple[str, str, int]]:
    return [(r["token"], r["state"], r["latency_ms"]) for w in written for r in analytics.rows_written(w.record, w.rows).rows()]


def test_each_state_of_a_token_is_one_row_with_its_dimensions_and_the_time_since_the_state_before() -> None:
    written = run(result([("t1", "accepted"), ("t2", "invalid_token")]), receipt("t1", "delivered", 3_400),
                  receipt("t1", "opened", 9_400, source="sdk"), receipt("t1", "clicked", 9_900, source="sdk"))
    assert states(written) == [("t1", "accepted", 1_000), ("t2", "invalid_token", -1), ("t1", "delivered", 400),
                               ("t1", "opened", 6_000), ("t1", "clicked", 500)]
    opened = written[2].rows[0]
    assert {k: opened[k] for k in ("brand", "model", "os_version", "app_version", "priority", "category", "campaign",
                                   "environment", "vendor", "pin", "source")} == {
        "brand": "xiaomi", "model": "2211133C", "os_version": "13", "app_version": "5.2.0", "priority": "high",
        "category": "marketing", "campaign": "spring", "environment": "production", "vendor": "xiaomi", "pin": "p-t1",
        "source": "sdk"}
    assert written[-1].summary["counts"] == {"accepted": 1, "invalid_token": 1, "delivered": 1, "opened": 1, "clicked": 1}


def test_a_delivery_reported_by_the_vendor_and_by_the_app_counts_once() -> None:
    written = run(result([("t1", "accepted")]), receipt("t1", "delivered", 3_400),
                  receipt("t1", "delivered", 3_450, source="sdk"), receipt("t1", "delivered", 3_400))
    assert states(written) == [("t1", "accepted", 1_000), ("t1", "delivered", 400)]
    assert written[-1].summary["counts"]["delivered"] == 1


def test_receipts_before_their_tokens_result_wait_for_it_and_land_in_order() -> None:
    written = run(receipt("t1", "opened", 9_000, source="sdk"), receipt("t1", "delivered", 4_000),
                  result([("t1", "accepted"), ("t2", "accepted")]))
    assert [w.rows for w in written[:2]] == [[], []]
    assert states(written) == [("t1", "accepted", 1_000), ("t2", "accepted", 1_000), ("t1", "delivered", 1_000),
                               ("t1", "opened", 5_000)]


def test_the_writer_inserts_a_windows_results_receipts_and_their_lifecycle_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    sent_result = codec.new_record("DispatchResult", **result([("t1", "accepted"), ("t2", "invalid_token")]))  # every field
    window = run(sent_result, receipt("t1", "delivered", 3_400))
    ch, sent = FakeClickHouse(set()), []
    writer = analytics.WriteWindow(Settings())
    writer.ch, writer.es, writer.beside = ch, None, ThreadPoolExecutor(1)
    writer.tables = {"results": "db.dispatch_results", "receipts": "db.receipts", "devices": "db.device_events"}
    writer.lifecycle = LifecycleWriter(ch, "db", started_ms=-10**9)  # type: ignore[arg-type]  # rows after its start
    monkeypatch.setattr(elastic, "write", lambda es, actions: sent.extend(actions))
    assert list(writer.process(0, None, window)) == [2]
    assert [(r["token"], r["state"]) for r in ch.tables["db.lifecycle_events"]] == [
        ("t1", "accepted"), ("t2", "invalid_token"), ("t1", "delivered")]
    assert [r["kind"] for r in ch.tables["db.receipts"]] == ["delivered"] and len(ch.tables["db.dispatch_results"]) == 1
    assert sent, "the message's totals go to Elasticsearch beside"
    writer.beside.shutdown()


def test_token_lives_are_stored_as_plain_tuples_and_those_an_older_version_stored_still_read() -> None:
    harness = Harness(analytics.MessageLifecycle())
    harness.process(result([("t1", "accepted"), ("t2", "accepted")]), key="a|m1")
    lives = harness.state("lives", "a|m1")
    assert type(lives.get("t1")) is tuple, "no class to pickle with each token's life"
    older = harness.states[("tokens", "a|m1")] = Mapped()  # as a version before wrote it: NamedTuples in "tokens"
    older.put("t2", lifecycle.TokenLife._make(lives.get("t2")))
    lives.remove("t2")
    harness.restore()  # what the job read from state: nothing kept in memory
    written = [w for r in (receipt("t1", "delivered", 3_400), receipt("t2", "delivered", 3_500))
               for w in harness.process(as_input(r), key="a|m1")]
    assert states(written) == [("t1", "delivered", 400), ("t2", "delivered", 500)]
    assert type(lives.get("t2")) is tuple and lives.get("t2")[4] == {"accepted": 3_000, "delivered": 3_500}


def test_receipts_read_recently_written_lives_from_memory_and_older_ones_from_state() -> None:
    harness = Harness(analytics.MessageLifecycle())
    harness.process(result([("t1", "accepted"), ("t2", "accepted")]), key="a|m1")
    harness.state("lives", "a|m1").remove("t1")  # had it been read from state, t1's receipt would wait for its result
    assert states(harness.process(as_input(receipt("t1", "delivered", 3_400)), key="a|m1")) == [("t1", "delivered", 400)]
    harness.now += analytics.Recent.MAX_AGE_MS + 1
    harness.state("lives", "a|m1").remove("t2")
    assert states(harness.process(as_input(receipt("t2", "delivered", 3_500)), key="a|m1")) == []  # waits: too old to trust memory
    assert states(harness.process(as_input(receipt("t1", "opened", 9_000)), key="a|m1")) == [("t1", "opened", 5_600)]  # from state


def test_recent_lives_are_two_generations_and_another_message_has_its_own() -> None:
    now = [0]
    recent, life = analytics.Recent(lambda: now[0]), lifecycle.TokenLife("hms", "p", "", "production", {"accepted": 1})
    recent.GENERATION = 2
    recent.put_all("a|m1", {"t1": life, "t2": life})
    recent.put_all("a|m1", {"t3": life})
    assert recent.get(("a|m1", "t1")) is life and recent.get(("a|m2", "t1")) is None
    later = life._replace(times={**life.times, "delivered": 2})
    recent.put_all("a|m1", {"t1": later, "t4": life})  # t1 written again stays in the old generation, updated
    assert recent.get(("a|m1", "t1")) is later and len(recent.young) == 2
    recent.put_all("a|m1", {"t5": life})  # the young generation was full: t1 and t2 are dropped
    assert recent.get(("a|m1", "t1")) is None and recent.get(("a|m1", "t3")) is life and recent.get(("a|m1", "t5")) is life


def test_a_late_receipt_hours_after_the_send_still_finds_its_token() -> None:
    hours = 5 * 3600_000
    assert states(run(result([("t1", "accepted")]), receipt("t1", "delivered", 3_000 + hours))) == [
        ("t1", "accepted", 1_000), ("t1", "delivered", hours)]


def test_a_result_seen_again_adds_nothing_and_retried_tokens_wait_for_their_final_attempt() -> None:
    written = run(result([("t1", "throttled")], final=False), result([("t1", "throttled")], final=False),
                  result([("t1", "accepted")], attempt=1))
    assert analytics.rows_written(written[0].record, written[0].rows).rows() == [] and len(written) == 2
    assert states(written) == [("t1", "accepted", 1_000)]


def test_aggregated_outcomes_are_one_row_standing_for_their_count() -> None:
    r = result([])
    r["outcomes"] = [{"token": "", "outcome": "suppressed", "code": "switched_off", "reason": "", "vendor_msg_id": "",
                      "pin": "", "exit": "", "final": True, "count": 42}]
    rows, lives = lifecycle.result_rows(r).rows(), lifecycle.result_lives(r)
    assert [(x["state"], x["code"], x["n"]) for x in rows] == [("suppressed", "switched_off", 42)] and lives == {}


def test_a_deliverys_receipt_states_are_read_back_from_its_lifecycle_rows() -> None:
    rows = [w_row for w in run(result([("t1", "accepted")]), receipt("t1", "delivered", 3_400),
                               receipt("t1", "opened", 4_000, source="sdk"), receipt("t1", "switched_off", 4_500))
            for w_row in w.rows]
    stored = RowsClickHouse([r for r in rows if r["source"] in receipt_states.RECEIPT_SOURCES])
    delivery = {"msg_id": "m1", "token": "t1", "outcome": "accepted"}
    (read,) = receipt_states.with_receipts(stored, Settings(), "a", [delivery])
    assert read == {**delivery, "delivered_at": 3_400, "opened_at": 4_000, "receipt": "switched_off", "receipt_code": "1",
                    "receipt_at": 4_500}
    assert stored.parameters["app"] == "a" and stored.parameters["tokens"] == ["t1"]
    assert receipt_states.with_receipts(stored, Settings(), "a", [{"msg_id": "m1", "token": "", "outcome": "suppressed"}]) == [
        {"msg_id": "m1", "token": "", "outcome": "suppressed"}]


class RowsClickHouse:
    """Answers every query with the lifecycle rows it holds, and keeps the last query's parameters."""

    def __init__(self, stored: list[dict]) -> None:
        self.stored, self.parameters = stored, {}

    def rows(self, sql: str, settings: dict | None = None, parameters: dict | None = None) -> list[dict]:
        self.parameters = parameters or {}
        return self.stored


class FakeClickHouse:
    """Answers the lifecycle writer's check for rows already written from `stored`; keeps what was inserted, in
    all (`inserted`) and per table (`tables`), columns as rows."""

    def __init__(self, stored: set[tuple[str, ...]]) -> None:
        self.stored, self.queries, self.inserted = stored, 0, []
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def rows(self, sql: str, settings: Any = None) -> list[dict[str, str]]:
        self.queries += 1
        return [dict(zip(("token", "pin", "state", "code", "batch_id"), key[2:], strict=True)) for key in self.stored
                if f"'{key[2]}'" in sql]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.inserted += rows
        self.tables.setdefault(table, []).extend(rows)

    def insert_columns(self, table: str, columns: dict[str, list[Any]]) -> None:
        self.insert(table, [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)])


def test_rows_recorded_before_the_writer_started_are_checked_and_those_already_written_skipped() -> None:
    rows = lifecycle.result_rows(result([("t1", "accepted"), ("t2", "accepted")]))  # recorded at 3,000
    ch = FakeClickHouse({("a", "m1", "t1", "p-t1", "accepted", "", "b1")})
    writer = LifecycleWriter(ch, "db", started_ms=10_000)  # type: ignore[arg-type]
    writer.insert(rows)
    assert [r["token"] for r in ch.inserted] == ["t2"] and writer.skipped == 1 and ch.queries == 1


def test_rows_recorded_after_the_writer_started_are_inserted_without_a_check() -> None:
    rows = lifecycle.result_rows(result([("t1", "accepted")]))
    ch = FakeClickHouse({("a", "m1", "t1", "p-t1", "accepted", "", "b1")})
    LifecycleWriter(ch, "db", started_ms=-100_000).insert(rows)  # type: ignore[arg-type]
    assert ch.queries == 0 and len(ch.inserted) == 1


def test_a_receipt_whose_send_never_comes_counts_after_the_wait_without_its_dimensions() -> None:
    harness = Harness(analytics.MessageLifecycle())
    assert harness.process(as_input(receipt("t9", "delivered", 3_400)), key="a|m1")[0].rows == []
    assert harness.advance(analytics.RECEIPT_WAIT_MS - 10_000) == []
    (late,) = harness.advance(10_000 + analytics.TIMER_GRAIN_MS)
    assert [(r["token"], r["state"], r["latency_ms"], r["brand"]) for r in late.rows] == [("t9", "delivered", -1, "")]
    assert late.summary["counts"] == {"delivered": 1}
    again = harness.process(as_input(receipt("t9", "delivered", 3_400, source="sdk")), key="a|m1")
    after = harness.process(as_input(result([("t9", "accepted")])), key="a|m1")
    assert again[0].rows == [] and states(after) == [("t9", "accepted", 1_000)]


def test_a_batch_of_receipts_of_several_messages_is_one_group_per_message() -> None:
    groups = analytics.receipt_groups([receipt("t1", "delivered", 1), {**receipt("t2", "delivered", 2), "msg_id": "m2"},
                                       receipt("t3", "opened", 3)])
    assert [(g["msg_id"], [r["token"] for r in g["receipts"]]) for g in groups] == [("m1", ["t1", "t3"]), ("m2", ["t2"])]


def test_receipts_come_as_the_gateways_batches_or_one_by_one_and_a_bad_value_is_dead_lettered() -> None:
    parse = analytics.ParseReceipts("push.receipts")
    parse.open(None)
    one, two = receipt("t1", "delivered", 1), receipt("t2", "opened", 2)
    batch = codec.encode("ReceiptBatch", {"receipts": [one, two]})
    assert [len(g["receipts"]) for g in parse.process_element(batch, None)] == [2]
    (single,) = parse.process_element(codec.encode("Receipt", one), None)
    assert single == {"app_id": "a", "msg_id": "m1", "receipts": [one]}
    ((tag, letter),) = parse.process_element(b"not avro", None)
    assert tag is DLQ and codec.decode("DeadLetter", letter)["error"] == "malformed_avro"


def test_accepted_to_delivered_and_delivered_to_opened_are_histograms_per_vendor_of_each_tokens_first_state() -> None:
    harness = Harness(analytics.MessageLifecycle())
    for record in (result([("t1", "accepted"), ("t2", "accepted")]), receipt("t1", "delivered", 3_400),
                   receipt("t1", "delivered", 3_450, source="sdk"), receipt("t2", "delivered", 48_000),
                   receipt("t1", "opened", 9_400, source="sdk"), receipt("t9", "delivered", 3_400),
                   receipt("t9", "opened", 4_400, source="sdk")):
        harness.process(as_input(record), key="a|m1")
    # t9's receipts count without its send: its delivery has no latency, its open has
    harness.advance(analytics.RECEIPT_WAIT_MS + analytics.TIMER_GRAIN_MS)
    metrics = harness.metrics

    def histogram(name: str) -> tuple[list[int | None], int | None, int | None]:
        buckets = [metrics.count_of(f"{name}_bucket", stage="message-totals", le=le, vendor="xiaomi")
                   for le in ("100", "500", "30000", "60000", "Inf")]
        return (buckets, metrics.count_of(f"{name}_count", stage="message-totals", vendor="xiaomi"),
                metrics.count_of(f"{name}_sum", stage="message-totals", vendor="xiaomi"))

    assert histogram("pushpipe_accepted_to_delivered_milliseconds") == ([0, 1, 1, 2, 2], 2, 400 + 45_000)
    assert histogram("pushpipe_delivered_to_opened_milliseconds") == ([0, 0, 2, 2, 2], 2, 6_000 + 1_000)


def test_the_token_less_rows_of_each_shard_have_keys_of_their_own() -> None:
    """Each shard of a broadcast reports its skipped devices as one row without a token: after a restart, one
    stored row must not stand for the others."""
    def skipped(batch: str, n: int) -> dict[str, Any]:
        r = result([], batch=batch)
        r["outcomes"] = [{"token": "", "outcome": "suppressed", "code": "switched_off", "reason": "", "vendor_msg_id": "",
                          "pin": "", "exit": "", "final": True, "count": n}]
        return r
    rows = Rows()
    for b, n in (("shard-1", 5), ("shard-2", 40), ("shard-3", 17)):
        rows.extend(lifecycle.result_rows(skipped(b, n)))
    ch = FakeClickHouse({("a", "m1", "", "", "suppressed", "switched_off", "shard-1")})
    LifecycleWriter(ch, "db", started_ms=10_000).insert(rows)  # type: ignore[arg-type]
    assert [(r["batch_id"], r["n"]) for r in ch.inserted] == [("shard-2", 40), ("shard-3", 17)]


def test_a_waiting_receipt_from_a_gateway_clock_ahead_is_looked_at_again_until_it_counts() -> None:
    harness = Harness(analytics.MessageLifecycle())
    ahead = {**receipt("t9", "delivered", 0), "received_at": harness.now + 3 * analytics.TIMER_GRAIN_MS}
    harness.process(as_input(ahead), key="a|m1")
    assert harness.advance(analytics.RECEIPT_WAIT_MS + analytics.TIMER_GRAIN_MS) == []  # its first timer: not yet
    (late,) = harness.advance(4 * analytics.TIMER_GRAIN_MS)
    assert [(r["token"], r["state"]) for r in late.rows] == [("t9", "delivered")]


def test_receipts_and_tokens_are_counted_by_their_labels_summed_once_per_record() -> None:
    harness = Harness(analytics.MessageLifecycle())
    harness.process(result([("t1", "accepted"), ("t2", "accepted"), ("t3", "invalid_token")]), key="a|m1")
    group = analytics.receipt_groups([receipt("t1", "delivered", 3_400), receipt("t2", "delivered", 3_500),
                                      receipt("t1", "opened", 3_600, source="sdk")])[0]
    harness.process(group, key="a|m1")
    count = harness.metrics.count_of
    assert count("pushpipe_tokens", stage="message-totals", vendor="xiaomi", outcome="accepted", code="none", final="true") == 2
    assert count("pushpipe_tokens", stage="message-totals", vendor="xiaomi", outcome="invalid_token", code="20301", final="true") == 1
    assert count("pushpipe_receipts", stage="message-totals", kind="delivered", source="vendor") == 2
    assert count("pushpipe_receipts", stage="message-totals", kind="opened", source="sdk") == 1



def test_a_results_accepted_groups_are_a_row_each_of_their_tokens_with_their_devices_profiles() -> None:
    r = {**result([("t0", "invalid_token")]), "accepted": [
        {"code": "", "reason": "", "vendor_msg_id": "v1", "exit": "xiaomi", "tokens": ["t1", "t2"], "pins": ["p1", ""],
         "profiles": [XIAOMI_13, ""]},
        {"code": "ledger", "reason": "sent before a restart", "vendor_msg_id": "", "exit": "", "tokens": ["t3"], "pins": ["p3"]}]}
    rows = lifecycle.result_rows(r).rows()
    assert [(x["token"], x["pin"], x["state"], x["code"], x["vendor_msg_id"], x["model"], x["latency_ms"], x["n"]) for x in rows] == [
        ("t0", "p-t0", "invalid_token", "20301", "", "2211133C", -1, 1), ("t1", "p1", "accepted", "", "v1", "2211133C", 1_000, 1),
        ("t2", "", "accepted", "", "v1", "", 1_000, 1), ("t3", "p3", "accepted", "ledger", "", "", 1_000, 1)]
    assert {x["campaign"] for x in rows} == {"spring"} and {x["ts"] for x in rows} == {3_000}
    assert {t: (life.pin, life.profile) for t, life in lifecycle.result_lives(r).items()} == {
        "t1": ("p1", XIAOMI_13), "t2": ("", ""), "t3": ("p3", "")}
