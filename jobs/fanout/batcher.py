"""The Batcher, per (app, message, vendor, text): gathers the tokens of many pins or shards into full
batches, and the not-sent outcomes of a pin list's pins into few results (vendor NO_VENDOR).

What waits is appended to a list state, a pin's part at a time, and read once when it goes out: kept as
one value, it was read and written whole for every pin (quadratic in a batch's size). The request is
written once per batch and its count apart, as an integer, since pickling it for every pin cost more than
the part itself. Batches are numbered per key in state, so a replay after a restart gives each the same id again.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.jobs import runtime
from pushpipe.jobs.fanout import records
from pushpipe.jobs.fanout.emit import lane_batch, not_sent
from pushpipe.jobs.fanout.messages import PICKLED, Gather
from pushpipe.schemas.results import NO_VENDOR

Record = dict[str, Any]
LINGER_MS = 100  # the longest a part waits for others to fill its batch
# Outlives any quiet-hours deferral of a message's pins, so a late pin's batch never reuses a number.
NUMBERS_TTL = Time.days(2)


@liveness.watched
class Batcher(KeyedProcessFunction):
    clock = staticmethod(runtime.now_ms)

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.parts = runtime_context.get_list_state(ListStateDescriptor("parts", PICKLED))  # lists of items
        self.head = runtime_context.get_state(ValueStateDescriptor("head", PICKLED))  # (vendor, request) of what waits
        self.waiting = runtime_context.get_state(ValueStateDescriptor("waiting", Types.INT()))  # items waiting
        emitted = ValueStateDescriptor("emitted", Types.INT())
        emitted.enable_time_to_live(runtime.ttl(NUMBERS_TTL))
        self.emitted = runtime_context.get_state(emitted)

    def process_element(self, value: Gather, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        _, vendor, request, items = value
        waiting = self.waiting.value()
        if waiting is None:
            waiting = 0
            self.head.update((vendor, request))
            ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + LINGER_MS)
        self.parts.add(items)
        waiting += len(items)
        full = records.MAX_OUTCOMES if vendor == NO_VENDOR else self.batch_size
        if waiting < full:
            self.waiting.update(waiting)
            return
        buffered = [item for part in self.parts.get() for item in part]
        self.parts.clear()
        while len(buffered) >= full:
            yield from self.flush(vendor, request, buffered[:full])
            buffered = buffered[full:]
        if buffered:
            self.parts.add(buffered)
        self.waiting.update(len(buffered))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        head = self.head.value()
        buffered = [item for part in (self.parts.get() or []) for item in part]
        self.head.clear()
        self.waiting.clear()
        self.parts.clear()
        if head and buffered:
            yield from self.flush(head[0], head[1], buffered)

    def flush(self, vendor: str, request: Record, items: list[Any]) -> Iterator[Any]:
        n = self.emitted.value() or 0
        self.emitted.update(n + 1)
        if vendor == NO_VENDOR:
            yield from not_sent(request, f"pins:{n}", records.without_unknown_pins(items), self.clock())
        else:
            yield lane_batch(request, vendor, items, self.batch_size, f"gather:{n}", self.clock())
