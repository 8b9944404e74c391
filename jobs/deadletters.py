"""Dead letters and tombstones: what a job does with a value it cannot take.

A malformed record becomes a DeadLetter on push.dlq, with the reason. A tombstone (null value) arrives as a
marked value (infra/java/pushpipe/TombstoneMarkingSchema.java): a deletion of its key where the topic is
compacted, a dead letter elsewhere.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.common import Types
from pyflink.datastream import OutputTag

from pushpipe.schemas import codec, letters

DLQ = OutputTag("dlq", Types.PRIMITIVE_ARRAY(Types.BYTE()))
log = logging.getLogger("pushpipe.jobs")


def dead_letter(job: str, topic: str, payload: bytes | None, error: str, reason: str, **ids: Any) -> tuple[OutputTag, bytes]:
    """A side-output element carrying an encoded DeadLetter (schemas/letters.py)."""
    return DLQ, letters.dead_letter(job, topic, payload, error, reason, **ids)


TOMBSTONE_MARK = b"\xfe\xffpushpipe:tombstone:"  # as in TombstoneMarkingSchema.MARK


@dataclass(frozen=True)
class Tombstone:
    """A record with a null value: on a compacted topic, the deletion of its key. (Not a tuple: parsers pass
    tuples, the dead letters, through as side outputs.)"""
    topic: str
    key: str


def tombstone(payload: bytes) -> Tombstone | None:
    """The tombstone a source value stands for (MARK + topic + NUL + key), or None for a value."""
    if not payload.startswith(TOMBSTONE_MARK):
        return None
    topic, _, key = bytes(payload[len(TOMBSTONE_MARK):]).partition(b"\0")
    return Tombstone(topic.decode(errors="replace"), key.decode(errors="replace"))


def tombstone_letter(job: str, dead: Tombstone, name: str, why: str = "") -> tuple[OutputTag, bytes]:
    reason = why or f"a null value (tombstone) on {dead.topic}, which is not compacted: send a {name} record instead"
    return dead_letter(job, dead.topic, dead.key.encode(), "tombstone", f"{reason} (key {dead.key[:200]!r})")


def decode_or_dlq(job: str, topic: str, name: str, payload: bytes) -> Iterator[Any]:
    """Yield the decoded record, or a DLQ side output with the reason (a tombstone's: see decode_or_tombstone)."""
    for item in decode_or_tombstone(job, topic, name, payload):
        yield tombstone_letter(job, item, name) if isinstance(item, Tombstone) else item


def decode_or_tombstone(job: str, topic: str, name: str, payload: bytes) -> Iterator[Any]:
    """Yield the decoded record, a Tombstone (for a compacted topic's parser to delete), or a DLQ side output."""
    dead = tombstone(payload)
    if dead is not None:
        yield dead
        return
    try:
        yield codec.decode(name, bytes(payload))
    except codec.BadRecord as bad:
        log.warning("%s: dead-lettered a %s record: %s", job, topic, bad.reason)
        yield dead_letter(job, topic, payload, bad.error, bad.reason)


