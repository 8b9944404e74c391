"""Operators' business counters as Flink metric groups (a fake group records what Flink would export)."""
from __future__ import annotations

from flink_fakes import MetricGroup
from pushpipe.jobs.counting import StageCounters, counting_letters, reason_code
from pushpipe.jobs.deadletters import dead_letter


class Context:
    def __init__(self) -> None:
        self.group = MetricGroup()

    def get_metrics_group(self) -> MetricGroup:
        return self.group


def test_counts_are_kept_per_name_and_labels_and_dead_letters_by_error_and_topic() -> None:
    context = Context()
    counters = StageCounters(context, "intake")
    counters.count("pushpipe_requests_in", target="pin")
    counters.count("pushpipe_requests_in", 2, target="pin")
    counters.count("pushpipe_requests_in", target="broadcast")
    letter = dead_letter("fanout", "push.requests", b"x", "malformed_avro", "not Avro")
    assert list(counting_letters(counters, "push.requests", ["a", letter])) == ["a", letter]
    stage = ("stage", "intake")
    assert context.group.counts == {
        ("pushpipe_requests_in", (stage, ("target", "pin"))): 3, ("pushpipe_requests_in", (stage, ("target", "broadcast"))): 1,
        ("pushpipe_dead_letters", (stage, ("error", "malformed_avro"), ("topic", "push.requests"))): 1}
    assert [reason_code(r) for r in ("frequency_cap:marketing", "title is 60 characters", "")] == ["frequency_cap", "title", ""]


def test_a_context_without_metrics_counts_nothing_and_fails_nothing() -> None:
    StageCounters(object(), "intake").count("pushpipe_requests_in", target="pin")


def test_a_value_counts_in_each_bucket_whose_bound_it_does_not_exceed_and_in_count_and_sum() -> None:
    context = Context()
    counters = StageCounters(context, "message-totals")
    counters.observe("pushpipe_wait_milliseconds", [250, 1000], (100, 500, 1000), vendor="hms")
    counters.observe("pushpipe_wait_milliseconds", [5000], (100, 500, 1000), vendor="hms")
    counters.observe("pushpipe_wait_milliseconds", [], (100, 500, 1000), vendor="hms")
    group = context.group

    def bucket(le: str) -> int | None:
        return group.count_of("pushpipe_wait_milliseconds_bucket", stage="message-totals", le=le, vendor="hms")

    assert [bucket(le) for le in ("100", "500", "1000", "Inf")] == [0, 1, 2, 3], "cumulative, the bound included, 100 from the start"
    assert group.count_of("pushpipe_wait_milliseconds_count", stage="message-totals", vendor="hms") == 3
    assert group.count_of("pushpipe_wait_milliseconds_sum", stage="message-totals", vendor="hms") == 6250
