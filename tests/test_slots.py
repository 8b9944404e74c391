"""Dispatch's slot keys (jobs/slots.py): a record keeps its own key; one key for one subtask, several a subtask for more."""
from __future__ import annotations

from pushpipe.jobs.slots import KEYS_PER_SUBTASK, SlotOf


def test_one_subtask_has_one_key() -> None:
    slot_of = SlotOf(1)
    assert {slot_of(f"bundle-{n}".encode()) for n in range(100)} == {"0"}


def test_records_are_spread_over_several_keys_a_subtask_and_each_keeps_its_key() -> None:
    slot_of = SlotOf(2)
    records = [f"bundle-{n}".encode() * 10 for n in range(500)]
    assert {slot_of(r) for r in records} == {str(k) for k in range(2 * KEYS_PER_SUBTASK)}
    assert all(slot_of(r) == slot_of(bytes(r)) for r in records), "the same bytes, the same key"
