"""A shard's devices kept in buckets: token -> the shard's summary of its device, a few to a few dozen per state entry.

A broadcast reads every device of the shard. Read from a MapState with an entry per token, each device cost a
few JNI calls and an unpickle of its own; a bucket's devices come in one entry for the same calls (measured on
100,000 devices: the fan-out's CPU per broadcast token 31-44 µs, where an entry per device took 33-68). The price
is on the device events: each one reads its bucket (once: `entry`) and rewrites it.

Shards written before buckets kept an entry per token (state "devices"): a shard moves them into its buckets the
first time it is touched (`adopt`). The move is one way: a version before buckets, started from a checkpoint taken
after, finds the shards it moved empty (their devices must be registered again).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from pyflink.datastream.state import MapState

from pushpipe.schemas import keys

Summary = dict[str, Any]
Bucket = dict[str, Summary]
# Per shard: with keys.SHARDS shards, 100,000 devices of an app are ~3 per bucket, 1,000,000 ~30.
BUCKETS = 1024


def bucket_of(token: str) -> int:
    # the shard is crc32 % SHARDS (keys.token_shard): the bits above it spread a shard's tokens over its buckets
    return (zlib.crc32(token.encode()) // keys.SHARDS) % BUCKETS


class DeviceBuckets:
    """The devices of the current shard key, over a MapState of bucket number -> Bucket."""

    def __init__(self, state: MapState[int, Bucket]) -> None:
        self.state = state

    def entry(self, token: str) -> Entry:
        """The token's place in its bucket, read once: a device event reads its device, then writes it."""
        number = bucket_of(token)
        return Entry(self.state, token, number, self.state.get(number) or {})

    def get(self, token: str) -> Summary | None:
        return self.entry(token).summary

    def put(self, token: str, summary: Summary) -> None:
        self.entry(token).put(summary)

    def remove(self, token: str) -> None:
        self.entry(token).remove()

    def items(self) -> Iterator[tuple[str, Summary]]:
        for _, bucket in self.state.items():
            yield from bucket.items()

    def adopt(self, legacy: MapState[str, Summary]) -> None:
        """Moves a shard's entries kept per token (before buckets) into its buckets; nothing once moved."""
        if legacy.is_empty():
            return
        moved: dict[int, Bucket] = {}
        for token, summary in legacy.items():
            moved.setdefault(bucket_of(token), {})[token] = summary
        for number, bucket in moved.items():
            self.state.put(number, {**(self.state.get(number) or {}), **bucket})
        legacy.clear()


class Entry:
    """One token's device in the bucket read for it (a copy: written back by put and remove)."""

    def __init__(self, state: MapState[int, Bucket], token: str, number: int, bucket: Bucket) -> None:
        self.state, self.token, self.number, self.bucket = state, token, number, bucket

    @property
    def summary(self) -> Summary | None:
        return self.bucket.get(self.token)

    def put(self, summary: Summary) -> None:
        self.bucket[self.token] = summary
        self.state.put(self.number, self.bucket)

    def remove(self) -> None:
        if self.bucket.pop(self.token, None) is None:
            return
        if self.bucket:
            self.state.put(self.number, self.bucket)
        else:
            self.state.remove(self.number)
