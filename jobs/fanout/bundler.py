"""The Bundler, per (lane, app, vendor): packs small batches into one DispatchBundle.

Dispatch pays a fixed cost per lane record (the Kafka record, PyFlink's async I/O element, its task and its
timeout): a single-pin batch pays it alone, a bundle once for up to LANE_RECORD_BATCHES. A bundle goes out
when it is full (batches, bytes, or a batch's worth of tokens) or BUNDLE_LINGER_MS after its first batch.
A batch that finds its lane quiet (nothing waiting, nothing sent for BUNDLE_LINGER_MS) goes at once, alone:
at a few pushes a second there is nothing to share a record with, and waiting only adds the linger to each
push's latency; the batches that follow it within the linger are bundled (as Nagle's algorithm does).
One app's bundles never hold another's, so one app's rate limit delays its own only.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.jobs.fanout.emit import lane_bundle
from pushpipe.jobs.fanout.messages import PICKLED, SmallBatch
from pushpipe.jobs.lanes import LANE_RECORD_BATCHES, LANE_RECORD_BYTES
from pushpipe.schemas import keys

BUNDLE_LINGER_MS = 20  # the longest a small batch waits for others to share its lane record


@liveness.watched
class Bundler(KeyedProcessFunction):
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        # PICKLED: in thread mode a list state of byte arrays fails to add bytes (Object[] is not byte[])
        self.bodies = runtime_context.get_list_state(ListStateDescriptor("bodies", PICKLED))
        # (batches, tokens, timer, bytes, when the last bundle went)
        self.size = runtime_context.get_state(ValueStateDescriptor("size", PICKLED))

    def process_element(self, value: SmallBatch, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        _, priority, batch_tokens, body = value
        # a size checkpointed before bytes were counted has three fields, before quiet lanes were seen four
        count, tokens, timer, size, sent_at = (*(self.size.value() or (0, 0, 0)), 0, 0)[:5]
        now = ctx.timer_service().current_processing_time()
        if not count and now - sent_at >= BUNDLE_LINGER_MS:  # a quiet lane: nothing to wait for
            self.size.update((0, 0, 0, 0, now))
            yield lane_bundle(priority, [body])
            return
        if not count:
            timer = now + BUNDLE_LINGER_MS
            ctx.timer_service().register_processing_time_timer(timer)
        self.bodies.add(body)
        count, tokens, size = count + 1, tokens + batch_tokens, size + len(body)
        if count >= LANE_RECORD_BATCHES or tokens >= self.batch_size or size >= LANE_RECORD_BYTES:
            ctx.timer_service().delete_processing_time_timer(timer)
            yield from self.flush(priority, now)
        else:
            self.size.update((count, tokens, timer, size, sent_at))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        waiting = self.size.value()
        if waiting and waiting[0]:
            yield from self.flush(keys.priority_of_bundle(ctx.get_current_key()), timestamp)

    def flush(self, priority: str, now: int) -> Iterator[Any]:
        bodies = list(self.bodies.get() or [])
        self.bodies.clear()
        self.size.update((0, 0, 0, 0, now))
        if bodies:
            yield lane_bundle(priority, bodies)
