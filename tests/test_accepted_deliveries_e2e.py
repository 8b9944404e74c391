"""Accepted deliveries live in ClickHouse, the others in Elasticsearch, and the support views read both as one
(sinks/accepted.py, sinks/batch_times.py, sinks/deliveries.py), through the stack's real ClickHouse and
Elasticsearch, written by the analytics job's own row and action builders."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from pushpipe.config import Settings
from pushpipe.jobs import lifecycle
from pushpipe.schemas import codec, keys, results
from pushpipe.sinks import batch_times, clickhouse, deliveries, elastic
from pushpipe.sinks import lifecycle as lifecycle_sink

pytestmark = pytest.mark.stack
T0 = (int(time.time()) - 3600) * 1000  # within lifecycle_events' 30 days


def attempt(app: str, number: int, outcomes: list[tuple[str, str, str, bool]]) -> dict:
    """A DispatchResult of batch b1 of message m1 (the vendor's answer 10 s after the attempt before), as dispatch
    writes it: accepted tokens grouped."""
    grouped = results.Outcomes()
    for token, pin, outcome, final in outcomes:
        grouped.add(token, pin, outcome, code="0" if outcome == "accepted" else outcome, exit_="apns",
                    vendor_msg_id=f"apns-{token}" if outcome == "accepted" else "", final=final)
    start = T0 + number * 10_000
    return codec.new_record("DispatchResult", batch_id="b1", msg_id="m1", app_id=app, vendor="apns", attempt=number,
                            outcomes=grouped.single, accepted=grouped.accepted, requested_at=T0, taken_at=T0 + 5, due_at=T0,
                            batched_at=start + 10, sent_at=start + 20, completed_at=start + 100)


def written(settings: Settings, app: str, *attempts: dict) -> None:
    """What the analytics job writes of each attempt: dispatch_results and lifecycle rows, and its Elasticsearch actions."""
    ch, es = clickhouse.connect(settings), elastic.connect(settings)
    try:
        for result in attempts:
            ch.insert(f"{settings.clickhouse_database}.dispatch_results", [clickhouse.result_row(result)])
            lifecycle_sink.LifecycleWriter(ch, settings.clickhouse_database, 0).insert(lifecycle.result_rows(result))
            elastic.write(es, elastic.delivery_actions(settings.es_deliveries_index, result))
    finally:
        ch.close()
        es.close()


@pytest.fixture(scope="module")
def app(pipeline: Settings) -> Iterator[str]:
    """t1 accepted at once; t2 unavailable, then accepted on the retry; t3 an invalid token."""
    name = f"acc-{uuid.uuid4().hex[:8]}"
    written(pipeline, name, attempt(name, 0, [("t1", "p1", "accepted", True), ("t2", "p2", "unavailable", False),
                                              ("t3", "p3", "invalid_token", True)]),
            attempt(name, 1, [("t2", "p2", "accepted", True)]))
    yield name


def test_only_what_was_not_accepted_has_a_document(pipeline: Settings, app: str) -> None:
    es = elastic.connect(pipeline)
    assert {d["token"]: d["outcome"] for d in elastic.deliveries(es, pipeline, app, "m1").values()} == {"t3": "invalid_token"}, \
        "t1 never had a document; t2's first attempt's was deleted when the retry accepted it"
    es.close()


def test_a_message_reads_as_one_with_each_acceptance_from_its_own_attempt(pipeline: Settings, app: str) -> None:
    es, ch = elastic.connect(pipeline), clickhouse.connect(pipeline, create=False)
    found = deliveries.of_message(es, ch, pipeline, app, "m1")
    assert {t: (d["outcome"], d["attempt"], d["vendor_msg_id"]) for t, d in found.items()} == {
        "t1": ("accepted", 0, "apns-t1"), "t2": ("accepted", 1, "apns-t2"), "t3": ("invalid_token", 0, "")}
    retried = found["t2"]
    assert (retried["requested_at"], retried["taken_at"], retried["batched_at"], retried["sent_at"], retried["completed_at"]) == (
        T0, T0 + 5, T0 + 10_010, T0 + 10_020, T0 + 10_100), "the times of the attempt that accepted it"
    assert deliveries.of_message(es, ch, pipeline, f"{app}-other", "m1") == {}, "another app sees none of it"
    es.close()
    ch.close()


def test_a_pins_story_has_its_acceptance_and_a_message_its_hop_times(pipeline: Settings, app: str) -> None:
    es, ch = elastic.connect(pipeline), clickhouse.connect(pipeline, create=False)
    (story,) = deliveries.of_pin(es, ch, pipeline, app, "p2")
    assert (story["token"], story["outcome"], story["pin"], story["final"]) == ("t2", "accepted", "p2", True)
    assert [d["outcome"] for d in deliveries.of_pin(es, ch, pipeline, app, "p3")] == ["invalid_token"]
    times = batch_times.of_message(ch, pipeline, app, "m1")
    assert times["completed_at"] == {"n": 3, "first": T0 + 100, "last": T0 + 10_100, "median": T0 + 100}, \
        "two tokens ended on the first attempt, one on the retry"
    assert times["taken_at"]["n"] == 3 and "due_at" in times
    es.close()
    ch.close()


def test_an_acceptance_documented_before_the_move_is_read_from_its_document(pipeline: Settings, app: str) -> None:
    """An install upgraded with deliveries in flight: an acceptance's document from before (with its times) and its
    row (whose batch kept none) are one delivery, the document's."""
    es, ch = elastic.connect(pipeline), clickhouse.connect(pipeline, create=False)
    old = {"msg_id": "m2", "app_id": app, "pin": "p4", "token": "t4", "vendor": "apns", "outcome": "accepted", "code": "0",
           "batch_id": "b2", "attempt": 0, "final": True, "requested_at": T0, "sent_at": T0 + 20, "completed_at": T0 + 100}
    es.index(index=pipeline.es_deliveries_index, id=keys.delivery_doc_id(app, "m2", "t4"), document=old, refresh=True)
    result = attempt(app, 0, [("t4", "p4", "accepted", True)])
    rows = lifecycle.result_rows({**result, "msg_id": "m2", "batch_id": "b2"})
    lifecycle_sink.LifecycleWriter(ch, pipeline.clickhouse_database, 0).insert(rows)
    assert [d["sent_at"] for d in deliveries.of_message(es, ch, pipeline, app, "m2").values()] == [T0 + 20]
    assert [(d["msg_id"], d["sent_at"]) for d in deliveries.of_pin(es, ch, pipeline, app, "p4")] == [("m2", T0 + 20)]
    es.close()
    ch.close()
