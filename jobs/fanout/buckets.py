"""A shard's devices kept in buckets: token -> the shard's summary of its device, a few to a few dozen per state entry.

A broadcast reads every device of the shard. Read from a MapState with an entry per token, each device cost a
few JNI calls and an unpickle of its own; a bucket's devices come in one entry for the same calls (measured on
100,000 devices: the fan-out's CPU per broadcast token 31-44 µs, where an entry per device took 33-68). The price
is on the device events: each one reads and rewrites its bucket.

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

    def get(self, token: str) -> Summary | None:
        bucket = self.state.get(bucket_of(token))
        return bucket.get(token) if bucket else None

    def put(self, token: str, summary: Summary) -> None:
        number = bucket_of(token)
        bucket = self.state.get(number) or {}
        bucket[token] = summary
        self.state.put(number, bucket)

    def remove(self, token: str) -> None:
        number = bucket_of(token)
        bucket = self.state.get(number)
        if not bucket or token not in bucket:
            return
        del bucket[token]
        if bucket:
            self.state.put(number, bucket)
        else:
            self.state.remove(number)

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
