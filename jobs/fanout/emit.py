"""The records fan-out's stages emit: a batch on its lane or on its way to the Bundler, and results for
what was not sent, each with its reason."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.datastream import OutputTag

from pushpipe.jobs.fanout import records
from pushpipe.jobs.fanout.devices import Target
from pushpipe.jobs.fanout.messages import LANES, RESULTS, TO_BUNDLER, SmallBatch
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.schemas import codec, keys

Record = dict[str, Any]


def lane_batch(request: Record, vendor: str, targets: list[Target], batch_size: int, position: str,
               now_ms: int) -> tuple[OutputTag, Any]:
    """A batch for its lane: one with at least half a full batch of tokens goes alone, a smaller one to the Bundler."""
    body = codec.body("DispatchBatch", records.batch(request, vendor, targets, now_ms, position))
    if 2 * len(targets) >= batch_size:
        return lane_bundle(request["priority"], [body])
    return TO_BUNDLER, SmallBatch(keys.bundle_key(request["priority"], request["app_id"], vendor), request["priority"], len(targets), body)


def lane_bundle(priority: str, bodies: list[bytes]) -> tuple[OutputTag, bytes]:
    return LANES[priority], codec.encode_array("DispatchBundle", bodies)


def not_sent(request: Record, key: str, outcomes: list[Unsent], now_ms: int, pin: str = "") -> Iterator[tuple[OutputTag, bytes]]:
    """Results for tokens (or, with token "", the pin or request) that were not sent, each with its reason."""
    for result in records.unsent_results(request, key, outcomes, pin, now_ms):
        yield RESULTS, codec.encode("DispatchResult", result)
