"""The pin directory, per user (keys.user_key): the user's devices, preferences, caps and vendor quotas;
expands what is addressed to the user (a pin push, a pin list's share, a broadcast under policy).

Quiet hours hold a request in `deferred` until they end. A pin push's batches go to their lane (or the
Bundler); a pin list's and a broadcast's tokens go to the Batcher, to be batched with other users'.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.jobs import runtime
from pushpipe.jobs.deadletters import dead_letter
from pushpipe.jobs.fanout import devices, records, shards
from pushpipe.jobs.fanout.directory import Directory
from pushpipe.jobs.fanout.emit import lane_batch, not_sent
from pushpipe.jobs.fanout.expand import Expansion, expand_for_pin, new_pin_state
from pushpipe.jobs.fanout.messages import GATHER, PICKLED, Gather, PinKind, ToPin
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.policy.preferences import InvalidPreference, apply_preference
from pushpipe.schemas import keys
from pushpipe.schemas.results import NO_VENDOR

Record = dict[str, Any]
JOB = "fanout"
BROADCASTS_TTL = Time.days(2)  # how long a pin remembers the broadcasts it took


@liveness.watched
class PinDirectory(Directory):
    stage = "pin-directory"

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.state = runtime_context.get_state(ValueStateDescriptor("pin", PICKLED))
        self.deferred = runtime_context.get_map_state(MapStateDescriptor("deferred", Types.STRING(), PICKLED))
        # broadcasts this pin has taken: each shard holding one of its devices sends the pin the broadcast once
        reached = MapStateDescriptor("broadcasts", Types.STRING(), Types.BOOLEAN())
        reached.enable_time_to_live(runtime.ttl(BROADCASTS_TTL))
        self.broadcasts = runtime_context.get_map_state(reached)
        # pin pushes this pin has taken, by message id, for the dedup window (Intake's, for what passes through it)
        pushes = MapStateDescriptor("pushes", Types.STRING(), Types.BOOLEAN())
        pushes.enable_time_to_live(runtime.ttl(Time.seconds(self.settings.dedup_window_s)))
        self.pushes = runtime_context.get_map_state(pushes)

    def process_element(self, value: ToPin, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key, kind, record = value
        if kind == "push" or (kind == "request" and record["target"] == "pin"):
            yield from self.push(record, kind, keys.pin_of(key), ctx)
            return
        state = self.state.value() or new_pin_state()
        if kind == "device":
            self.state.update({**state, "devices": devices.apply_event(state["devices"], record)})
        elif kind == "preference":
            try:
                self.state.update({**state, "prefs": apply_preference(state["prefs"], record)})
            except InvalidPreference as bad:
                yield dead_letter(JOB, self.settings.topics.preferences, b"", "invalid_preference", str(bad), app_id=record["app_id"])
        elif kind == "broadcast" and self.broadcasts.get(record["msg_id"]):
            return  # taken already, from another shard of the pin's devices
        else:
            if kind == "broadcast":
                self.broadcasts.put(record["msg_id"], True)
            yield from self.expand(record, keys.pin_of(key), state, ctx)

    def push(self, record: Record, kind: PinKind, pin: str, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        """A pin push, sent at most once per message id within the dedup window, whichever way it came: straight
        from the parser when due now (its TTL checked here), or from Intake when it was scheduled."""
        now = self.clock()
        if self.pushes.get(record["msg_id"]):
            yield from not_sent(record, "duplicate", [records.DUPLICATE], now, pin)
            return
        self.pushes.put(record["msg_id"], True)
        if kind == "push" and records.expired(record, now):
            yield from not_sent(record, "expired", [records.EXPIRED], now, pin)
        else:
            yield from self.expand(record, pin, self.state.value() or new_pin_state(), ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        due = [(msg_id, request) for msg_id, request in self.deferred.items() if request["_defer_until"] <= timestamp]
        for msg_id, request in due:
            self.deferred.remove(msg_id)
            pin = keys.pin_of(ctx.get_current_key())
            held = {**request, "due_at": request["_defer_until"]}  # due when the user's quiet hours end
            yield from self.expand(held, pin, self.state.value() or new_pin_state(), ctx)

    def expand(self, request: Record, pin: str, state: Record, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        only = None
        if request["target"] in ("broadcast", "segment"):  # the pin's devices in the audience
            only = {token for token, _ in shards.select(state["devices"].items(), request)[0]}
        result = expand_for_pin(request, pin, state, self.clock(), self.policy, self.templates, only)
        if state["devices"] or result.state is not state:  # a pin without devices counts nothing: an unknown one leaves no state
            self.state.update(result.state)
        if result.defer_until is not None:
            self.deferred.put(request["msg_id"], {**request, "_defer_until": result.defer_until})
            ctx.timer_service().register_processing_time_timer(result.defer_until)
            return
        yield from self.emit(request, pin, result)

    def emit(self, request: Record, pin: str, result: Expansion) -> Iterator[Any]:
        now = self.clock()
        outcomes = result.not_sent + ([Unsent("", "suppressed", result.suppressed)] if result.suppressed else [])
        if outcomes and request["target"] == "pin":
            yield from not_sent(request, f"pin:{pin}", outcomes, now, pin)
        elif outcomes:  # a pin list's outcomes are gathered into few results, however many of its pins have none
            unknown = not result.state["devices"]  # a pin the app never registered a device for: counted, not named
            gathered = [o._replace(pin="" if unknown else pin) for o in outcomes]
            yield GATHER, Gather(keys.group_key(request["app_id"], request["msg_id"], NO_VENDOR, ""), NO_VENDOR, request, gathered)
        for (vendor, text), (rendered_request, targets) in result.groups.items():
            self.expanded(vendor, len(targets))
            if request["target"] == "pin":
                for n, part in enumerate(records.chunks(targets, self.batch_size)):
                    yield lane_batch(rendered_request, vendor, part, self.batch_size, f"pin:{pin}:{n}", now)
            else:
                yield GATHER, Gather(keys.group_key(request["app_id"], request["msg_id"], vendor, text), vendor, rendered_request, targets)
