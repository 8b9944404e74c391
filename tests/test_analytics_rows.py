"""Result rows for ClickHouse, message and delivery actions for Elasticsearch, and message totals (pure functions)."""
import pytest
from elasticsearch import helpers

from pushpipe.config import Settings
from pushpipe.jobs import analytics
from pushpipe.jobs.fanout import records
from pushpipe.producer import push_request
from pushpipe.schemas import codec, results
from pushpipe.sinks import clickhouse, elastic


def result(outcomes: list[tuple[str, str]], final: bool = True) -> dict:
    return codec.new_record(
        "DispatchResult", batch_id="b1", msg_id="m1", app_id="a", vendor="apns",
        outcomes=[{"token": t, "outcome": o, "code": "", "reason": "", "vendor_msg_id": "", "pin": "", "exit": "apns",
                   "final": final} for t, o in outcomes],
        requested_at=1_000, sent_at=1_500, completed_at=121_000,
    )


def test_counts_per_outcome() -> None:
    row = clickhouse.result_row(result([("t1", "accepted"), ("t2", "invalid_token"), ("t3", "expired"), ("t4", "accepted")]))
    assert (row["requested"], row["sent"], row["accepted"], row["failed"], row["expired"]) == (4, 3, 2, 1, 1)
    assert row["minute"] == 120 and row["latency_ms"] == 120_000


def test_latency_counts_from_when_the_message_became_due_and_the_hold_apart() -> None:
    held = {**result([("t1", "accepted")]), "due_at": 61_000}  # a deliver_at, an occurrence or quiet hours
    row = clickhouse.result_row(held)
    assert (row["latency_ms"], row["hold_ms"]) == (60_000, 60_000)
    assert clickhouse.result_row(result([("t1", "accepted")]))["hold_ms"] == 0, "an old result: due when requested"
    request = {**push_request("a", ["u"], "t", "b", deliver_at=90_000), "created_at": 1_000}
    assert [records.due_at(r) for r in ({**request, "created_at": 1_000}, {**request, "deliver_at": None, "created_at": 1_000},
                                         {**request, "due_at": 120_000})] == [90_000, 1_000, 120_000]
    assert records.batch(request, "apns", [("t1", "u", "", "")], 2_000, "pin:u:0")["due_at"] == 90_000


def grouped(accepted: list[str], failed: list[tuple[str, str]], attempt: int = 0) -> dict:
    """A result as dispatch writes it: accepted tokens in one group, the rest one by one."""
    outcomes = results.Outcomes()
    for token, outcome in [(t, "accepted") for t in accepted] + failed:
        outcomes.add(token, "", outcome, exit_="apns")
    return {**result([]), "outcomes": outcomes.single, "accepted": outcomes.accepted, "attempt": attempt}


def deliveries_by_token(r: dict) -> list[dict]:
    return sorted((a["_source"] for a in elastic.delivery_actions("d", r)), key=lambda doc: doc["token"])


def test_grouped_accepted_tokens_count_like_single_ones() -> None:
    one_by_one = result([("t1", "accepted"), ("t2", "accepted"), ("t3", "invalid_token")])
    together = grouped(["t1", "t2"], [("t3", "invalid_token")])
    assert len(together["outcomes"]) == 1 and together["accepted"][0]["tokens"] == ["t1", "t2"]
    assert clickhouse.result_row(together) == clickhouse.result_row(one_by_one)
    assert analytics.add_result(analytics.empty_summary(), together)["counts"] == {"accepted": 2, "invalid_token": 1}
    assert deliveries_by_token(together) == deliveries_by_token(one_by_one)
    assert codec.decode("DispatchResult", codec.encode("DispatchResult", together)) == together


def test_grouped_retry_takes_its_tokens_off_retrying() -> None:
    summary = analytics.add_result(analytics.empty_summary(), result([("t1", "unavailable"), ("t2", "unavailable")], final=False))
    after = analytics.add_result(summary, grouped(["t1", "t2"], [], attempt=1))
    assert after["counts"] == {"retrying": 0, "accepted": 2}


def test_suppressed_pin_counts_no_token() -> None:
    row = clickhouse.result_row(result([("", "suppressed")]))
    assert (row["requested"], row["sent"], row["failed"], row["suppressed"]) == (0, 0, 0, 1)


def test_message_action_is_a_partial_update_without_outcomes() -> None:
    summary = {"counts": {"accepted": 1}, "vendors": ["apns"], "last_completed_at": 5}
    action = elastic.message_action("idx", result([("t1", "accepted")]), summary)
    assert (action["_op_type"], action["_index"], action["_id"], action["doc_as_upsert"]) == ("update", "idx", "a:m1", True)
    assert action["doc"]["counts"] == {"accepted": 1} and "outcomes" not in action["doc"]


def test_delivery_actions_are_keyed_by_message_and_token_and_versioned_by_attempt() -> None:
    retried = {**result([("t1", "accepted"), ("t2", "invalid_token")]), "attempt": 2}
    actions = elastic.delivery_actions("deliveries", retried)
    assert [(a["_op_type"], a["_id"]) for a in actions] == [("delete", "a:m1|t1"), ("index", "a:m1|t2")], \
        "the retry accepted t1: its earlier attempt's document goes"
    assert {(a["_index"], a["version"], a["version_type"]) for a in actions} == {("deliveries", 2, "external_gte")}
    doc = actions[1]["_source"]
    assert (doc["token"], doc["outcome"], doc["attempt"], doc["final"], doc["batch_id"]) == ("t2", "invalid_token", 2, True, "b1")
    assert set(doc) == set(elastic.DELIVERY_MAPPING["properties"])


def test_accepted_tokens_have_no_delivery_document_only_the_others_do() -> None:
    first = grouped(["t1", "t2"], [("t3", "invalid_token")])
    assert [a["_id"] for a in elastic.delivery_actions("deliveries", first)] == ["a:m1|t3"]
    assert {a["_op_type"] for a in elastic.delivery_actions("deliveries", {**first, "attempt": 1})} == {"delete", "index"}


def test_delivery_without_token_is_keyed_by_batch() -> None:
    (action,) = elastic.delivery_actions("deliveries", result([("", "suppressed")]))
    assert action["_id"] == "a:m1|b1" and action["_source"]["token"] == ""


def test_result_actions_update_the_message_then_index_its_deliveries() -> None:
    settings = Settings(es_index="messages", es_deliveries_index="deliveries")
    summary = {"counts": {"accepted": 2}, "vendors": ["apns"], "last_completed_at": 5}
    actions = elastic.window_actions(settings, [(result([("t1", "accepted"), ("t2", "throttled")]), summary)])
    assert [(a["_index"], a["_id"]) for a in actions] == [("messages", "a:m1"), ("deliveries", "a:m1|t2")]


def test_a_window_updates_each_message_once_with_its_latest_totals() -> None:
    settings = Settings(es_index="messages", es_deliveries_index="deliveries")
    first, second = result([("t1", "expired")]), {**result([("t2", "rejected")]), "batch_id": "b2"}
    actions = elastic.window_actions(settings, [(first, {"counts": {"accepted": 1}}), (second, {"counts": {"accepted": 2}})])
    updates = [a for a in actions if a["_index"] == "messages"]
    assert len(updates) == 1 and updates[0]["doc"]["counts"] == {"accepted": 2}
    assert [a["_id"] for a in actions if a["_index"] == "deliveries"] == ["a:m1|t1", "a:m1|t2"]


def bulk_returning(failures: list[dict], calls: list[dict]):
    """A stand-in for helpers.streaming_bulk yielding `failures` as (False, item), as it does without raising."""
    def streaming_bulk(es, actions, **kwargs):
        calls.append({"actions": list(actions), **kwargs})
        yield from ((False, item) for item in failures)
    return streaming_bulk


def test_write_ignores_a_replayed_older_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    conflict = {"index": {"_id": "a:m1|t1", "status": 409, "error": {"type": "version_conflict_engine_exception"}}}
    monkeypatch.setattr(elastic.helpers, "streaming_bulk", bulk_returning([conflict], calls))
    elastic.write(None, iter(elastic.delivery_actions("deliveries", result([("t1", "unavailable")]))))
    assert calls[0]["chunk_size"] == elastic.CHUNK_SIZE and not calls[0]["raise_on_error"]
    assert [a["_id"] for a in calls[0]["actions"]] == ["a:m1|t1"]


@pytest.mark.parametrize("status", [409, 404])
def test_write_ignores_a_replayed_delete_of_a_retried_tokens_document(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    """409: a later attempt's document is there (a replay); 404: the earlier attempt had none, or it is gone."""
    deleted = {"delete": {"_id": "a:m1|t1", "status": status}}
    monkeypatch.setattr(elastic.helpers, "streaming_bulk", bulk_returning([deleted], []))
    elastic.write(None, [])


@pytest.mark.parametrize("failure", [
    {"index": {"_id": "a:m1|t1", "status": 400, "error": {"type": "mapper_parsing_exception"}}},
    {"index": {"_id": "a:m1|t1", "status": 429, "error": {"type": "es_rejected_execution_exception"}}},
    {"update": {"_id": "m1", "status": 409, "error": {"type": "version_conflict_engine_exception"}}},
])
def test_write_raises_on_any_other_failure(monkeypatch: pytest.MonkeyPatch, failure: dict) -> None:
    monkeypatch.setattr(elastic.helpers, "streaming_bulk", bulk_returning([failure], []))
    with pytest.raises(helpers.BulkIndexError) as raised:
        elastic.write(None, [])
    assert raised.value.errors == [failure]


def test_message_totals_add_each_result() -> None:
    first = analytics.add_result(analytics.empty_summary(), result([("t1", "accepted"), ("t2", "invalid_token")]))
    assert first["counts"] == {"accepted": 1, "invalid_token": 1} and first["vendors"] == ["apns"]
    assert analytics.counted_key(result([("t1", "accepted")])) == analytics.counted_key({**result([]), "attempt": 0})


def test_aggregated_outcomes_count_as_many_as_they_stand_for() -> None:
    r = result([("", "suppressed"), ("", "suppressed")])
    r["outcomes"][0].update(count=40, exit="fanout")
    r["outcomes"][1].update(count=2, exit="fanout")
    row = clickhouse.result_row(r)
    assert (row["requested"], row["sent"], row["suppressed"]) == (0, 0, 42)
    assert analytics.add_result(analytics.empty_summary(), r)["counts"] == {"suppressed": 42}


def test_tokens_to_be_retried_are_not_counted_as_failed() -> None:
    row = clickhouse.result_row(result([("t1", "throttled"), ("t2", "unavailable")], final=False))
    assert (row["requested"], row["failed"], row["throttled"], row["retried"]) == (0, 0, 0, 2)


def test_message_totals_move_retried_tokens_to_their_final_outcome() -> None:
    first = analytics.add_result(analytics.empty_summary(), result([("t1", "throttled")], final=False))
    assert first["counts"] == {"retrying": 1}
    later = analytics.add_result(first, {**result([("t1", "accepted")]), "attempt": 1})
    assert later["counts"] == {"retrying": 0, "accepted": 1}


def test_outcomes_decided_at_fan_out_are_never_counted_as_sent() -> None:
    r = result([("", "expired"), ("t1", "suppressed"), ("t2", "rejected")])
    r["outcomes"][2]["exit"] = "fanout"
    row = clickhouse.result_row(r)
    assert (row["requested"], row["sent"], row["failed"], row["expired"], row["suppressed"]) == (2, 0, 0, 1, 1)


def test_receipts_go_to_clickhouse_as_columns_with_epoch_ms_times_and_utc_days() -> None:
    receipt = {"receipt_id": "r1", "msg_id": "m1", "app_id": "a", "vendor": "hms", "token": "t1", "kind": "delivered", "code": "0",
               "source": "vendor", "ts": 1_796_083_199_999, "received_at": 1_796_083_200_050}  # the last ms of 2026-11-30 UTC
    columns = clickhouse.receipt_columns([receipt, {**receipt, "receipt_id": "r2", "ts": 1_796_083_200_000}])
    assert columns["day"] == [20_787, 20_788] and columns["ts"] == [1_796_083_199_999, 1_796_083_200_000]
    assert columns["received_at"] == [1_796_083_200_050] * 2 and columns["receipt_id"] == ["r1", "r2"]
