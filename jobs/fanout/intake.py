"""Intake, per (app, msg_id): drops duplicates within the window, holds deliver_at and cron schedules in
timers, expires requests past their TTL, and routes the rest to pins or shards. A pin push due now does not come
here: the parser sends it straight to its pin (records.due_now_to_one_pin), whose directory does the same checks.

A long pin list goes out PIN_SLICE pins at a time, a slice per timer: between slices the operator takes
other requests, and the pin directory has room for them, so one request to 100,000 pins does not hold
every other app's pushes behind it (as fast as possible, it held them ~15-20 s). The pace follows the job:
a slice that was slow to hand on (backpressure from the pin directory, or a busy job) doubles the wait
before the next, and each quick one shortens it again. At a fixed 4,000 pins/s, where the pin directory took
~1,400 unknown pins/s, the intake stayed backpressured and took in other requests about one a second.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.jobs import runtime
from pushpipe.jobs.fanout import records
from pushpipe.jobs.fanout.emit import not_sent
from pushpipe.jobs.fanout.messages import PICKLED, TO_SHARD, ToPin, ToShard
from pushpipe.jobs.policy.schedule import next_fire
from pushpipe.schemas import keys

Record = dict[str, Any]
PIN_SLICE = 100  # pins routed per slice ...
SLICE_INTERVAL_MS = 25  # ... a slice every 25 ms at most: 4,000 pins/s ...
SLOW_SLICE_MS = 20  # ... a slice that took longer to hand on than this doubles the wait before the next ...
MAX_SLICE_INTERVAL_MS = 1_000  # ... up to a slice a second


@liveness.watched
class Intake(KeyedProcessFunction):
    clock = staticmethod(runtime.now_ms)

    def __init__(self, dedup_window_s: int) -> None:
        self.dedup_window_s = dedup_window_s

    def open(self, runtime_context: RuntimeContext) -> None:
        seen = ValueStateDescriptor("seen", Types.BOOLEAN())
        seen.enable_time_to_live(runtime.ttl(Time.seconds(self.dedup_window_s)))
        self.seen = runtime_context.get_state(seen)
        self.scheduled = runtime_context.get_state(ValueStateDescriptor("scheduled", PICKLED))
        self.due = runtime_context.get_state(ValueStateDescriptor("due", Types.LONG()))  # of the scheduled request
        # slices still to go out, each (request, pins) under its number, stored once and read once: a list
        # of the pins left, written back after each slice, made a 100,000-pin request quadratic
        self.slices = runtime_context.get_map_state(MapStateDescriptor("slices", Types.INT(), PICKLED))
        self.slicing = runtime_context.get_state(ValueStateDescriptor("slicing", PICKLED))  # (next slice, end, wait ms)
        self.slice_at = runtime_context.get_state(ValueStateDescriptor("slice_at", Types.LONG()))

    def process_element(self, request: Record, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        now = self.clock()
        request = {**request, "taken_at": now}
        if self.seen.value():
            yield from not_sent(request, "duplicate", [records.DUPLICATE], now)
            return
        self.seen.update(True)
        due = request["deliver_at"] or (next_fire(request["recurrence"], now, request["recurrence_tz"]) if request["recurrence"] else now)
        if due > now:
            self.scheduled.update(request)
            self.due.update(due)
            ctx.timer_service().register_processing_time_timer(due)
            return
        yield from self.release(request, now, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        # Flink keeps one timer per key and time: a slice and a schedule due at the same ms share it
        if self.slice_at.value() == timestamp:
            yield from self.next_slice(ctx)
        request, due = self.scheduled.value(), self.due.value()
        if request is None or (due is not None and due > timestamp):
            return
        now = self.clock()
        if not request["recurrence"]:
            self.scheduled.clear()
            self.due.clear()
            yield from self.release(request, now, ctx)
            return
        yield from self.release({**records.occurrence(request, timestamp), "taken_at": now}, now, ctx)
        following = next_fire(request["recurrence"], timestamp, request["recurrence_tz"])
        if request["recurrence_until"] and following > request["recurrence_until"]:
            self.scheduled.clear()
            self.due.clear()
        else:
            self.due.update(following)
            ctx.timer_service().register_processing_time_timer(following)

    def release(self, request: Record, now: int, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        """A due request: expired, or routed to its pins (a long list, a slice at a time) or to the app's shards."""
        if records.expired(request, now):
            yield from not_sent(request, "expired", [records.EXPIRED], now)
            return
        pins = request["pins"]
        carried = records.without_pins(request)
        if request["target"] in ("pin", "pins"):
            yield from to_pins(carried, pins[:PIN_SLICE])
            if len(pins) > PIN_SLICE:
                self.keep_slices(carried, pins[PIN_SLICE:], ctx)
        elif request["target"] == "tokens":
            for token in request["tokens"]:
                yield TO_SHARD, ToShard(keys.shard_key(request["app_id"], token), "token", {**carried, "tokens": [token]})
        else:  # broadcast, segment
            for key in keys.all_shard_keys(request["app_id"]):
                yield TO_SHARD, ToShard(key, "everyone", carried)

    def keep_slices(self, carried: Record, pins: list[str], ctx: KeyedProcessFunction.Context) -> None:
        """Store the pins to route later, a slice each, after any slices still waiting (of an earlier occurrence)."""
        first, end, wait_ms = self.slices_waiting()
        if first >= end:  # none waiting: start the timers
            self.next_slice_in(wait_ms, ctx)
        for n, part in enumerate(records.chunks(pins, PIN_SLICE), start=end):
            self.slices.put(n, (carried, part))
            end = n + 1
        self.slicing.update((first, end, wait_ms))

    def next_slice(self, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        first, end, wait_ms = self.slices_waiting()
        if first >= end:
            return
        carried, pins = self.slices.get(first)
        self.slices.remove(first)
        started = self.clock()
        yield from to_pins(carried, pins)  # each handed on before the generator goes on: blocked by backpressure
        wait_ms = next_wait_ms(wait_ms, self.clock() - started)
        if first + 1 < end:
            self.slicing.update((first + 1, end, wait_ms))
            self.next_slice_in(wait_ms, ctx)
        else:
            self.slicing.clear()
            self.slice_at.clear()

    def slices_waiting(self) -> tuple[int, int, int]:
        """(the next slice's number, the number after the last, the wait before the next): state written before the
        wait was kept holds two numbers."""
        first, end, *wait = self.slicing.value() or (0, 0)
        return first, end, wait[0] if wait else SLICE_INTERVAL_MS

    def next_slice_in(self, wait_ms: int, ctx: KeyedProcessFunction.Context) -> None:
        at = ctx.timer_service().current_processing_time() + wait_ms
        self.slice_at.update(at)
        ctx.timer_service().register_processing_time_timer(at)


def next_wait_ms(wait_ms: int, took_ms: int) -> int:
    """The wait before the next slice: twice as long after a slow slice, a quarter shorter after a quick one."""
    if took_ms > SLOW_SLICE_MS:
        return min(MAX_SLICE_INTERVAL_MS, 2 * wait_ms)
    return max(SLICE_INTERVAL_MS, wait_ms * 3 // 4)


def to_pins(carried: Record, pins: list[str]) -> Iterator[ToPin]:
    for pin in pins:
        yield ToPin(keys.pin_key(carried["app_id"], pin), "request", carried)
