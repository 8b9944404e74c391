"""DispatchResult -> ClickHouse row and Elasticsearch merge action."""
from schemas import codec
from sinks import clickhouse, elastic


def result(outcomes: list[tuple[str, str]]) -> dict:
    return codec.new_record(
        "DispatchResult", batch_id="b1", msg_id="m1", app_id="a", vendor="apns",
        outcomes=[{"token": t, "outcome": o, "code": "", "reason": "", "vendor_msg_id": ""} for t, o in outcomes],
        requested_at=1_000, sent_at=1_500, completed_at=121_000,
    )


def test_counts_per_outcome() -> None:
    row = clickhouse.result_row(result([("t1", "accepted"), ("t2", "invalid_token"), ("t3", "expired"), ("t4", "accepted")]))
    assert (row["requested"], row["sent"], row["accepted"], row["failed"], row["expired"]) == (4, 3, 2, 1, 1)
    assert row["minute"] == 120 and row["latency_ms"] == 120_000


def test_suppressed_pin_counts_no_token() -> None:
    row = clickhouse.result_row(result([("", "suppressed")]))
    assert (row["requested"], row["sent"], row["failed"], row["suppressed"]) == (0, 0, 0, 1)


def test_merge_action_is_keyed_by_message_and_token() -> None:
    action = elastic.merge_action("idx", result([("t1", "accepted")]))
    assert action["_id"] == "m1" and action["scripted_upsert"]
    assert action["script"]["params"]["tokens"] == ["t1"]
