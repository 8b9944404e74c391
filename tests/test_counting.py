"""Operators' business counters as Flink metric groups (a fake group records what Flink would export)."""
from __future__ import annotations

from pushpipe.jobs.counting import StageCounters, counting_letters, reason_code
from pushpipe.jobs.deadletters import dead_letter


class Group:
    def __init__(self, path: tuple[tuple[str, str], ...] = ()) -> None:
        self.path, self.counts = path, {}

    def add_group(self, key: str, value: str) -> Group:
        child = Group((*self.path, (key, value)))
        child.counts = self.counts
        return child

    def counter(self, name: str) -> Counter:
        return Counter(self.counts, (name, self.path))


class Counter:
    def __init__(self, counts: dict, key: tuple) -> None:
        self.counts, self.key = counts, key

    def inc(self, n: int = 1) -> None:
        self.counts[self.key] = self.counts.get(self.key, 0) + n


class Context:
    def __init__(self) -> None:
        self.group = Group()

    def get_metrics_group(self) -> Group:
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
