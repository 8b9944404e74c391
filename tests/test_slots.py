"""Dispatch's slot keys (jobs/slots.py): computed as Flink places keys, one on each subtask, and a record keeps its own."""
from __future__ import annotations

import random

import pytest

from pushpipe.jobs.runtime import MAX_PARALLELISM
from pushpipe.jobs.slots import SlotOf, slot_keys, subtask_of


@pytest.fixture(scope="module")
def flink_assignment():  # type: ignore[no-untyped-def]
    """Flink's own KeyGroupRangeAssignment, through PyFlink's Java gateway (a JVM of its own)."""
    from pyflink.java_gateway import get_gateway

    return get_gateway().jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment


def test_keys_land_on_the_subtask_flink_puts_them_on(flink_assignment) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    keys = [str(n) for n in range(50)] + ["".join(rng.choice("abcxyz019é") for _ in range(rng.randint(1, 12))) for _ in range(50)]
    for parallelism in (1, 2, 3, 5, 8):
        for key in keys:
            assert subtask_of(key, parallelism, MAX_PARALLELISM) == flink_assignment.assignKeyToParallelOperator(
                key, MAX_PARALLELISM, parallelism), (key, parallelism)


def test_each_subtask_has_one_slot_key() -> None:
    for parallelism in (1, 2, 3, 4, 8):
        keys = slot_keys(parallelism, MAX_PARALLELISM)
        assert [subtask_of(k, parallelism, MAX_PARALLELISM) for k in keys] == list(range(parallelism))


def test_records_are_spread_over_the_subtasks_and_each_keeps_its_key() -> None:
    slot_of = SlotOf(2, MAX_PARALLELISM)
    records = [f"bundle-{n}".encode() * 10 for n in range(200)]
    by_key = {slot_of(r) for r in records}
    assert by_key == set(slot_keys(2, MAX_PARALLELISM))
    assert all(slot_of(r) == slot_of(bytes(r)) for r in records), "the same bytes, the same key"
