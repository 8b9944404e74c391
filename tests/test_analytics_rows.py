"""Result rows for ClickHouse, message updates for Elasticsearch, and message totals (pure functions)."""
from jobs import analytics
from schemas import codec
from sinks import clickhouse, elastic


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


def test_suppressed_pin_counts_no_token() -> None:
    row = clickhouse.result_row(result([("", "suppressed")]))
    assert (row["requested"], row["sent"], row["failed"], row["suppressed"]) == (0, 0, 0, 1)


def test_message_update_is_keyed_by_message_and_token() -> None:
    summary = {"counts": {"accepted": 1}, "vendors": ["apns"], "last_completed_at": 5}
    action = elastic.message_update("idx", result([("t1", "accepted")]), summary)
    assert action["_id"] == "m1" and action["doc_as_upsert"]
    assert action["doc"]["outcomes"]["t1"]["outcome"] == "accepted" and action["doc"]["counts"] == {"accepted": 1}


def test_message_totals_count_each_batch_attempt_once() -> None:
    first = analytics.add_result(analytics.empty_summary(), result([("t1", "accepted"), ("t2", "invalid_token")]))
    assert first["counts"] == {"accepted": 1, "invalid_token": 1} and first["vendors"] == ["apns"]
    assert analytics.add_result(first, result([("t1", "accepted")])) is None  # same batch again


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
