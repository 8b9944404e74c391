"""Fan-out job: requests, device events and preferences -> batches per vendor on the priority lanes.

    push.requests ─ parse ─ key msg_id: Intake (dedup window, TTL, deliver_at and cron timers)
        ├─ pin, pins ──────────> key app|pin: PinDirectory (devices, preferences, caps, quiet hours,
        │                          templates, payload limits) ─> batches, or per pin-list to the Batcher
        └─ tokens, broadcast, ─> key app|shard: ShardDirectory (devices by token hash, the opt-outs
           segment                 of their users) ─> batches
    device.events + device.feedback, user.preferences ─ parse ─> both directories
Broadcasts, segments and tokens honour opt-outs and unsubscribe. A broadcast or segment that quiet hours,
daily caps or vendor quotas can touch goes from the shards to each matching pin (TO_PIN), whose directory
holds the user's whole history and applies the same policy as to a pin push; one none of them can touch
(urgent, uncapped) is expanded by the shards alone.
Batches go to push.dispatch.<priority>: a big one alone, small ones (a single pin's) through the
Bundler, which packs those of one (lane, app, vendor) into one record. Everything not sent becomes a
result with its reason; bad input goes to push.dlq.

Run: python -m pushpipe.jobs.fanout
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.config import PRIORITIES, Settings
from pushpipe.jobs import common, devices, keys, requests, shards
from pushpipe.jobs.expand import Expansion, expand_for_pin, new_pin_state, rendered, variant
from pushpipe.jobs.policy.classify import message_class
from pushpipe.jobs.policy.decide import per_user_policy_applies
from pushpipe.jobs.policy.limits import payload_problems
from pushpipe.jobs.policy.policyfile import policy_config
from pushpipe.jobs.policy.preferences import InvalidPreference, apply_preference, blocked_reason, reset_event
from pushpipe.jobs.policy.schedule import next_fire
from pushpipe.jobs.policy.templates import TemplateError, TemplateStore
from pushpipe.schemas import codec

JOB = "fanout"
PICKLED = Types.PICKLED_BYTE_ARRAY()
PARTIAL = OutputTag("partial", PICKLED)
SHARD = OutputTag("shard", PICKLED)
BUNDLE = OutputTag("bundle", PICKLED)
TALLY = OutputTag("tally", PICKLED)
TO_PIN = OutputTag("to-pin", PICKLED)
RESULTS = OutputTag("results", common.BYTES)
FEEDBACK = OutputTag("feedback", common.BYTES)
LANES = {priority: OutputTag(f"lane-{priority}", common.BYTES) for priority in PRIORITIES}
LINGER_MS = 100
# A long pin list is routed PIN_SLICE pins at a time, a slice every SLICE_INTERVAL_MS (4,000 pins/s): it never
# fills the pin directory's input, so other requests pass it (as fast as possible, it held them ~15-20 s).
PIN_SLICE = 100
SLICE_INTERVAL_MS = 25
GROUP_TTL = Time.days(2)  # per-message state of the Batcher and the tally
# A bundle is full at this many bytes: with one more small batch (< half a batch of the longest ids) it
# stays below Kafka's 1 MiB record limit.
LANE_RECORD_BYTES = 512 * 1024
BUNDLE_LINGER_MS = 20  # the longest a small batch waits for others to share its lane record
STATE_BACKEND = {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true",
                 "taskmanager.memory.managed.size": "1g",  # RocksDB block cache and write buffers
                 # Each checkpoint flushes a small file of pins spread over the whole key range; level
                 # compaction then rewrote the whole directory level with it (a steady ~14% of a core at
                 # 1M pins under single-pin traffic). Universal compaction merges small runs with each other.
                 "state.backend.rocksdb.compaction.style": "UNIVERSAL"}


def lane_batch(request: dict, vendor: str, targets: list[devices.Target], batch_size: int, position: str) -> tuple[OutputTag, Any]:
    """A batch for its lane: one with at least half a full batch of tokens goes alone, a smaller one to the Bundler.

    The Bundler gets (key, lane priority, token count, the batch's Avro body): bytes, cheaper to pass
    between operators and to keep in state than the record.
    """
    body = codec.body("DispatchBatch", requests.batch(request, vendor, targets, common.now_ms(), position))
    if 2 * len(targets) >= batch_size:
        return lane_bundle(request["priority"], [body])
    return BUNDLE, (keys.bundle_key(request["priority"], request["app_id"], vendor), request["priority"], len(targets), body)


def lane_bundle(priority: str, bodies: list[bytes]) -> tuple[OutputTag, bytes]:
    return LANES[priority], codec.encode_array("DispatchBundle", bodies)


def not_sent(request: dict, key: str, outcomes: list[tuple], pin: str = "") -> Iterator[tuple[OutputTag, bytes]]:
    """Results for tokens (or, with token "", the pin or request) that were not sent, each with its reason."""
    for result in requests.unsent_results(request, key, outcomes, pin, common.now_ms()):
        yield RESULTS, codec.encode("DispatchResult", result)


@liveness.watched
class ParseRequests(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        for item in common.decode_or_dlq(JOB, self.topic, "PushRequest", value):
            if isinstance(item, tuple):
                yield item
                continue
            try:
                requests.validate(item)
            except requests.InvalidRequest as bad:
                yield common.dead_letter(JOB, self.topic, value, "invalid_request", str(bad), msg_id=item["msg_id"], app_id=item["app_id"])
                continue
            yield item


@liveness.watched
class ParseDeviceEvents(ProcessFunction):
    """Each event goes to its pin (main output) and to its token's shard (side output). A tombstone on the
    compacted device.events (key app|token) deletes the token: its shard forgets it and tells its pin."""

    def __init__(self, topic: str, compacted: tuple[str, ...]) -> None:
        self.topic, self.compacted = topic, compacted

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        for item in common.decode_or_tombstone(JOB, self.topic, "DeviceEvent", value):
            if isinstance(item, common.Tombstone):
                yield from self.forget(item)
            elif isinstance(item, tuple):
                yield item
            elif problem := devices.event_problem(item):
                yield common.dead_letter(JOB, self.topic, value, "invalid_device_event", problem, app_id=item["app_id"])
            else:
                yield keys.user_key(item["app_id"], item["pin"], item["token"]), "dev", item
                yield SHARD, (shards.shard_key(item["app_id"], item["token"]), "dev", item)

    def forget(self, dead: common.Tombstone) -> Iterator[Any]:
        if dead.topic not in self.compacted:
            yield common.tombstone_letter(JOB, dead, "DeviceEvent")
            return
        app_id, _, token = dead.key.partition(keys.SEP)
        try:
            keys.check_app_id(app_id)
            keys.check_token(token)
        except keys.InvalidId as bad:
            yield common.tombstone_letter(JOB, dead, "DeviceEvent", f"a tombstone on {dead.topic} whose key is not app|token: {bad}")
            return
        yield SHARD, (shards.shard_key(app_id, token), "forget", token)


@liveness.watched
class ParsePreferences(ProcessFunction):
    """Each preference goes to its pin, and to every shard of its app (a pin's devices are in any of them).
    A tombstone (key app|pin|setting, see keys.preference_key) returns that setting to its default."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        for item in common.decode_or_tombstone(JOB, self.topic, "PreferenceEvent", value):
            if isinstance(item, tuple):
                yield item
                continue
            app_id = keys.app_of(item.key) if isinstance(item, common.Tombstone) else item["app_id"]
            try:
                event = self.reset(item) if isinstance(item, common.Tombstone) else item
                keys.check_app_id(event["app_id"])
                keys.check_pin(event["pin"])
            except (keys.InvalidId, InvalidPreference) as bad:
                yield common.dead_letter(JOB, self.topic, value, "invalid_preference", str(bad), app_id=app_id)
                continue
            yield keys.pin_key(event["app_id"], event["pin"]), "pref", event
            for key in shards.all_shard_keys(event["app_id"]):
                yield SHARD, (key, "pref", event)

    @staticmethod
    def reset(dead: common.Tombstone) -> dict:
        app_id, pin, setting = (dead.key.split(keys.SEP, 2) + ["", ""])[:3]
        return codec.new_record("PreferenceEvent", app_id=app_id, pin=pin, ts=common.now_ms(), **reset_event(setting))


@liveness.watched
class Intake(KeyedProcessFunction):
    """Per (app, msg_id): drops duplicates within the window, holds deliver_at and cron schedules in timers,
    expires requests past their TTL, and routes the rest to pins or shards.

    A long pin list goes out PIN_SLICE pins at a time, a slice per timer: between slices the operator takes
    other requests, and the pin directory has room for them, so one request to 100,000 pins does not hold
    every other app's pushes behind it."""

    def __init__(self, dedup_window_s: int) -> None:
        self.dedup_window_s = dedup_window_s

    def open(self, runtime_context: RuntimeContext) -> None:
        seen = ValueStateDescriptor("seen", Types.BOOLEAN())
        seen.enable_time_to_live(StateTtlConfig.new_builder(Time.seconds(self.dedup_window_s)).build())
        self.seen = runtime_context.get_state(seen)
        self.scheduled = runtime_context.get_state(ValueStateDescriptor("scheduled", PICKLED))
        self.due = runtime_context.get_state(ValueStateDescriptor("due", Types.LONG()))  # of the scheduled request
        # slices still to go out, each (request, pins) under its number, stored once and read once: a list
        # of the pins left, written back after each slice, made a 100,000-pin request quadratic
        self.slices = runtime_context.get_map_state(MapStateDescriptor("slices", Types.INT(), PICKLED))
        self.slicing = runtime_context.get_state(ValueStateDescriptor("slicing", PICKLED))  # (next slice, end)
        self.slice_at = runtime_context.get_state(ValueStateDescriptor("slice_at", Types.LONG()))

    def process_element(self, request: dict, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        now = common.now_ms()
        if self.seen.value():
            yield from not_sent(request, "duplicate", [("", "suppressed", "duplicate")])
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
        now = common.now_ms()
        if not request["recurrence"]:
            self.scheduled.clear()
            self.due.clear()
            yield from self.release(request, now, ctx)
            return
        yield from self.release(requests.occurrence(request, timestamp), now, ctx)
        following = next_fire(request["recurrence"], timestamp, request["recurrence_tz"])
        if request["recurrence_until"] and following > request["recurrence_until"]:
            self.scheduled.clear()
            self.due.clear()
        else:
            self.due.update(following)
            ctx.timer_service().register_processing_time_timer(following)

    def release(self, request: dict, now: int, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        """A due request: expired, or routed to its pins (a long list, a slice at a time) or to the app's shards."""
        if now > request["created_at"] + request["ttl_s"] * 1000:
            yield from not_sent(request, "expired", [("", "expired", "past its TTL before it could be sent")])
            return
        pins = request["pins"]
        carried = requests.without_pins(request)
        if request["target"] in ("pin", "pins"):
            yield from pin_routes(carried, pins[:PIN_SLICE])
            if len(pins) > PIN_SLICE:
                self.keep_slices(carried, pins[PIN_SLICE:], ctx)
        elif request["target"] == "tokens":
            for token in request["tokens"]:
                yield SHARD, (shards.shard_key(request["app_id"], token), "tok", {**carried, "tokens": [token]})
        else:  # broadcast, segment
            for key in shards.all_shard_keys(request["app_id"]):
                yield SHARD, (key, "all", carried)

    def keep_slices(self, carried: dict, pins: list[str], ctx: KeyedProcessFunction.Context) -> None:
        """Store the pins to route later, a slice each, after any slices still waiting (of an earlier occurrence)."""
        first, end = self.slicing.value() or (0, 0)
        if first >= end:  # none waiting: start the timers
            self.next_slice_soon(ctx)
        for n, part in enumerate(requests.chunks(pins, PIN_SLICE), start=end):
            self.slices.put(n, (carried, part))
            end = n + 1
        self.slicing.update((first, end))

    def next_slice(self, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        first, end = self.slicing.value() or (0, 0)
        if first >= end:
            return
        carried, pins = self.slices.get(first)
        self.slices.remove(first)
        yield from pin_routes(carried, pins)
        if first + 1 < end:
            self.slicing.update((first + 1, end))
            self.next_slice_soon(ctx)
        else:
            self.slicing.clear()
            self.slice_at.clear()

    def next_slice_soon(self, ctx: KeyedProcessFunction.Context) -> None:
        at = ctx.timer_service().current_processing_time() + SLICE_INTERVAL_MS
        self.slice_at.update(at)
        ctx.timer_service().register_processing_time_timer(at)


def pin_routes(carried: dict, pins: list[str]) -> Iterator[tuple[str, str, dict]]:
    for pin in pins:
        yield keys.pin_key(carried["app_id"], pin), "req", carried


@liveness.watched
class Directory(KeyedProcessFunction):
    """Shared set-up: the policy and templates, read once per worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.batch_size = self.settings.batch_size
        self.policy = policy_config(self.settings)
        path = self.settings.templates_file
        self.templates = TemplateStore.from_dict(json.loads(path.read_text()) if path.exists() else {"templates": {}})

    def classed(self, request: dict) -> dict:
        """The request with its message class by the policy: the one mapping dispatch's adapters follow."""
        return {**request, "message_class": message_class(request["category"], self.policy.classes)}


@liveness.watched
class PinDirectory(Directory):
    """Per (app, pin): devices, preferences, caps; expands requests addressed to the pin."""

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.state = runtime_context.get_state(ValueStateDescriptor("pin", PICKLED))
        self.deferred = runtime_context.get_map_state(MapStateDescriptor("deferred", Types.STRING(), PICKLED))
        # broadcasts this pin has taken: each shard holding one of its devices sends the pin the broadcast once
        reached = MapStateDescriptor("broadcasts", Types.STRING(), Types.BOOLEAN())
        reached.enable_time_to_live(StateTtlConfig.new_builder(GROUP_TTL).build())
        self.broadcasts = runtime_context.get_map_state(reached)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key, kind, record = value
        state = self.state.value() or new_pin_state()
        if kind == "dev":
            self.state.update({**state, "devices": devices.apply_event(state["devices"], record)})
        elif kind == "pref":
            try:
                self.state.update({**state, "prefs": apply_preference(state["prefs"], record)})
            except InvalidPreference as bad:
                yield common.dead_letter(JOB, self.settings.topics.preferences, b"", "invalid_preference", str(bad), app_id=record["app_id"])
        elif kind == "bcast" and self.broadcasts.get(record["msg_id"]):
            return  # taken already, from another shard of the pin's devices
        else:
            if kind == "bcast":
                self.broadcasts.put(record["msg_id"], True)
            yield from self.expand(record, keys.pin_of(key), state, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        due = [(msg_id, request) for msg_id, request in self.deferred.items() if request["_defer_until"] <= timestamp]
        for msg_id, request in due:
            self.deferred.remove(msg_id)
            pin = keys.pin_of(ctx.get_current_key())
            held = {**request, "due_at": request["_defer_until"]}  # due when the user's quiet hours end
            yield from self.expand(held, pin, self.state.value() or new_pin_state(), ctx)

    def expand(self, request: dict, pin: str, state: dict, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        only = None
        if request["target"] in ("broadcast", "segment"):  # the pin's devices in the audience
            only = {token for token, _ in shards.select(state["devices"].items(), request)[0]}
        request = self.classed(request)
        result = expand_for_pin(request, pin, state, common.now_ms(), self.policy, self.templates, only)
        self.state.update(result.state)
        if result.defer_until is not None:
            self.deferred.put(request["msg_id"], {**request, "_defer_until": result.defer_until})
            ctx.timer_service().register_processing_time_timer(result.defer_until)
            return
        yield from self.emit(request, pin, result)

    def emit(self, request: dict, pin: str, result: Expansion) -> Iterator[Any]:
        outcomes = result.not_sent + ([("", "suppressed", result.suppressed)] if result.suppressed else [])
        if outcomes and request["target"] == "pin":
            yield from not_sent(request, f"pin:{pin}", outcomes, pin)
        elif outcomes:  # a pin list's outcomes are gathered into few results, however many of its pins have none
            unknown = not result.state["devices"]  # a pin the app never registered a device for: counted, not named
            gathered = [requests.Unsent(*o, pin="" if unknown else pin) for o in outcomes]
            yield PARTIAL, (keys.group_key(request["app_id"], request["msg_id"], requests.NO_VENDOR, ""), requests.NO_VENDOR, request, gathered)
        for (vendor, text), (rendered_request, targets) in result.groups.items():
            if request["target"] == "pin":
                for n, part in enumerate(requests.chunks(targets, self.batch_size)):
                    yield lane_batch(rendered_request, vendor, part, self.batch_size, f"pin:{pin}:{n}")
            else:
                yield PARTIAL, (keys.group_key(request["app_id"], request["msg_id"], vendor, text), vendor, rendered_request, targets)


@liveness.watched
class ShardDirectory(Directory):
    """Per (app, token shard): the shard's devices; expands broadcasts, segments and explicit tokens."""

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.devices = runtime_context.get_map_state(MapStateDescriptor("devices", Types.STRING(), PICKLED))
        # pin -> its blocking preferences (opt-outs, unsubscribe), only for pins that have any
        self.blocking = runtime_context.get_map_state(MapStateDescriptor("blocking", Types.STRING(), PICKLED))

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key, kind, record = value
        if kind == "dev":
            yield from self.update(record)
        elif kind == "pref":
            self.prefer(record)
        elif kind == "tok":
            yield from self.explicit(self.classed(record))
        elif kind == "forget":
            yield from self.forget(keys.app_of(key), record)
        else:
            yield from self.everyone(self.classed(record), key)

    def update(self, event: dict) -> Iterator[Any]:
        # thread mode: MapState.get answers None for a missing key, and remove of one is a no-op
        if event["previous_token"]:
            self.devices.remove(event["previous_token"])
        known = self.devices.get(event["token"])
        moved = shards.moved_from(known, event)
        if moved is not None:  # the token changed pin (or left or gained one): its old user stops targeting it
            unbind = codec.new_record("DeviceEvent", **{**event, "kind": "unbind", "pin": moved, "reason": "moved"})
            yield FEEDBACK, codec.encode("DeviceEvent", unbind)
        after = shards.summary_after(known, event)
        if after is not None:
            self.devices.put(event["token"], after)
        elif known is not None:
            self.devices.remove(event["token"])

    def forget(self, app_id: str, token: str) -> Iterator[Any]:
        """A token deleted by a tombstone: gone from the shard, and its pin told through device.feedback."""
        known = self.devices.get(token)
        if known is None:
            return
        self.devices.remove(token)
        gone = codec.new_record("DeviceEvent", app_id=app_id, pin=known["pin"], token=token, kind="deregister",
                                vendor=known["vendor"], platform=known["platform"], reason="tombstone", ts=common.now_ms())
        yield FEEDBACK, codec.encode("DeviceEvent", gone)

    def prefer(self, event: dict) -> None:
        known = self.blocking.get(event["pin"])
        try:
            after = shards.blocking_preferences(apply_preference(known, event))
        except InvalidPreference:
            return  # the pin directory dead-letters it, once
        if after:
            self.blocking.put(event["pin"], after)
        elif known is not None:
            self.blocking.remove(event["pin"])

    def explicit(self, request: dict) -> Iterator[Any]:
        token = request["tokens"][0]
        device = self.devices.get(token)
        if device is None or not device["enabled"]:
            yield from not_sent(request, f"token:{token}", [(token, "suppressed", "unknown_token" if device is None else "switched_off")])
        elif device["environment"] != request["environment"]:
            yield from not_sent(request, f"token:{token}", [(token, "suppressed", "test_push_to_production_device")])
        else:
            yield from self.grouped(request, [(token, device)], f"token:{token}", batcher=True)

    def everyone(self, request: dict, shard: str) -> Iterator[Any]:
        """A broadcast or segment in this shard: the matching devices, those skipped counted per reason (not
        listed), and a report of how many matched, so that a message that matches nowhere says so."""
        chosen, skipped = shards.select(self.devices.items(), request)
        position = f"shard:{shards.shard_of(shard)}"
        if skipped:
            yield from not_sent(request, f"{position}:skipped", [("", "suppressed", reason, "", n) for reason, n in sorted(skipped.items())])
        yield TALLY, (keys.message_key(request["app_id"], request["msg_id"]), request, len(chosen))
        if per_user_policy_applies(request, self.policy):
            for user in sorted({keys.user_key(request["app_id"], device["pin"], token) for token, device in chosen}):
                yield TO_PIN, (user, "bcast", request)
        else:
            yield from self.grouped(request, chosen, position, batcher=False)

    def allowed(self, request: dict, chosen: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], list[tuple[str, str, str]]]:
        """The devices whose user's preferences allow this message, and the others with the reason."""
        blocking = dict(self.blocking.items())  # few pins have any: read once per request
        if not blocking:
            return chosen, []
        allowed, blocked = [], []
        for token, device in chosen:
            prefs = blocking.get(device["pin"])
            reason = prefs and blocked_reason(prefs, request["category"], device["vendor"], self.policy.classes)
            if reason:
                blocked.append((token, "suppressed", reason))
            else:
                allowed.append((token, device))
        return allowed, blocked

    def grouped(self, request: dict, chosen: list[tuple[str, dict]], position: str, batcher: bool) -> Iterator[Any]:
        groups: dict[tuple[str, str], tuple[dict, list[devices.Target]]] = {}
        chosen, unsent = self.allowed(request, chosen)
        placements: dict[tuple[str, str], tuple[str, str] | str] = {}  # (vendor, locale) -> group key, or why not
        for token, device in chosen:
            where = (device["vendor"], device["locale"])
            if where not in placements:  # render and check once per vendor and locale, not per device
                placements[where] = self.placement(request, groups, *where)
            place = placements[where]
            if isinstance(place, str):
                unsent.append((token, "rejected", place))
            else:
                groups[place][1].append((token, device["pin"], device["fallback_token"] or ""))
        if unsent:
            yield from not_sent(request, f"{position}:unsent", unsent)
        for (vendor, text), (rendered_request, targets) in groups.items():
            if batcher:
                yield PARTIAL, (keys.group_key(request["app_id"], request["msg_id"], vendor, text), vendor, rendered_request, targets)
            else:
                for n, part in enumerate(requests.chunks(targets, self.settings.batch_size)):
                    yield lane_batch(rendered_request, vendor, part, self.settings.batch_size, f"{position}:{n}")

    def placement(self, request: dict, groups: dict, vendor: str, locale: str) -> tuple[str, str] | str:
        """The group for devices of this vendor and locale (created if new), or the reason they are not sent."""
        try:
            note = rendered(request["notification"], locale, self.templates)
        except TemplateError as bad:
            return f"template: {bad}"
        problems = payload_problems(note, vendor)
        if problems:
            return "; ".join(problems)
        key = (vendor, variant(note))
        groups.setdefault(key, ({**request, "notification": note}, []))
        return key


@liveness.watched
class Batcher(KeyedProcessFunction):
    """Gathers the tokens of one (app, message, vendor, text) from many pins or shards into full batches, and
    the not-sent outcomes of a pin list's pins into few results (vendor NO_VENDOR).

    What waits is appended to a list state, a pin's part at a time, and read once when it goes out: kept as
    one value, it was read and written whole for every pin (quadratic in a batch's size). Batches are
    numbered per key in state, so a replay after a restart gives each the same id again."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.parts = runtime_context.get_list_state(ListStateDescriptor("parts", PICKLED))  # lists of items
        self.head = runtime_context.get_state(ValueStateDescriptor("head", PICKLED))  # (vendor, request, items waiting)
        # outlives any quiet-hours deferral of a message's pins, so a late pin's batch never reuses a number
        emitted = ValueStateDescriptor("emitted", Types.INT())
        emitted.enable_time_to_live(StateTtlConfig.new_builder(GROUP_TTL).build())
        self.emitted = runtime_context.get_state(emitted)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[tuple]:
        _, vendor, request, items = value
        head = self.head.value()
        if head is None:
            head = (vendor, request, 0)
            ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + LINGER_MS)
        self.parts.add(items)
        waiting = head[2] + len(items)
        full = requests.MAX_OUTCOMES if vendor == requests.NO_VENDOR else self.batch_size
        if waiting < full:
            self.head.update((head[0], head[1], waiting))
            return
        buffered = [item for part in self.parts.get() for item in part]
        self.parts.clear()
        while len(buffered) >= full:
            yield from self.flush(vendor, request, buffered[:full])
            buffered = buffered[full:]
        if buffered:
            self.parts.add(buffered)
        self.head.update((head[0], head[1], len(buffered)))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[tuple]:
        head = self.head.value()
        buffered = [item for part in (self.parts.get() or []) for item in part]
        self.head.clear()
        self.parts.clear()
        if head and buffered:
            yield from self.flush(head[0], head[1], buffered)

    def flush(self, vendor: str, request: dict, items: list) -> Iterator[tuple]:
        n = self.emitted.value() or 0
        self.emitted.update(n + 1)
        if vendor == requests.NO_VENDOR:
            yield from not_sent(request, f"pins:{n}", requests.without_unknown_pins(items))
        else:
            yield lane_batch(request, vendor, items, self.batch_size, f"gather:{n}")


@liveness.watched
class BroadcastTally(KeyedProcessFunction):
    """Per (app, message) of a broadcast or segment: adds up the shards' reports of matching devices, and
    when every shard has reported and none matched, ends the message with "no_devices_matched"."""

    def open(self, runtime_context: RuntimeContext) -> None:
        tally = ValueStateDescriptor("tally", PICKLED)  # (shards reported, devices matched)
        tally.enable_time_to_live(StateTtlConfig.new_builder(GROUP_TTL).build())
        self.tally = runtime_context.get_state(tally)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        _, request, matched = value
        reported, total = self.tally.value() or (0, 0)
        reported, total = reported + 1, total + matched
        if reported < shards.SHARDS:
            self.tally.update((reported, total))
            return
        self.tally.clear()
        if not total:
            yield from not_sent(request, "no_devices", [("", "suppressed", "no_devices_matched")])


@liveness.watched
class Bundler(KeyedProcessFunction):
    """Packs the small batches of one (lane, app, vendor) into one DispatchBundle.

    Dispatch pays a fixed cost per lane record (the Kafka record, PyFlink's async I/O element and its
    timeout timer): a single-pin batch pays it alone, a bundle once for up to LANE_RECORD_BATCHES.
    A bundle goes out when it is full (batches, or a batch's worth of tokens) or BUNDLE_LINGER_MS after
    its first batch. One app's bundles never hold another's, so one app's rate limit delays its own only.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        # PICKLED: in thread mode a list state of byte arrays fails to add bytes (Object[] is not byte[])
        self.bodies = runtime_context.get_list_state(ListStateDescriptor("bodies", PICKLED))
        self.size = runtime_context.get_state(ValueStateDescriptor("size", PICKLED))  # (batches, tokens, timer, bytes)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[tuple]:
        _, priority, batch_tokens, body = value
        # a size checkpointed before bytes were counted has three fields
        count, tokens, timer, size = (*(self.size.value() or (0, 0, 0)), 0)[:4]
        if not count:
            timer = ctx.timer_service().current_processing_time() + BUNDLE_LINGER_MS
            ctx.timer_service().register_processing_time_timer(timer)
        self.bodies.add(body)
        count, tokens, size = count + 1, tokens + batch_tokens, size + len(body)
        if count >= common.LANE_RECORD_BATCHES or tokens >= self.batch_size or size >= LANE_RECORD_BYTES:
            ctx.timer_service().delete_processing_time_timer(timer)
            yield from self.flush(priority)
        else:
            self.size.update((count, tokens, timer, size))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[tuple]:
        if self.size.value():
            yield from self.flush(keys.priority_of_bundle(ctx.get_current_key()))

    def flush(self, priority: str) -> Iterator[tuple[OutputTag, bytes]]:
        bodies = list(self.bodies.get() or [])
        self.bodies.clear()
        self.size.clear()
        if bodies:
            yield lane_bundle(priority, bodies)


def first(item: tuple) -> str:
    return item[0]


def message_key(request: dict) -> str:
    return keys.message_key(request["app_id"], request["msg_id"])


def build(settings: Settings) -> Any:
    # The device directory grows with the install base: RocksDB with incremental checkpoints writes only
    # what changed, where the heap backend would copy every device on every checkpoint.
    env = common.environment(settings, JOB, STATE_BACKEND, mode="thread")
    topics, group = settings.topics, f"pushpipe-{JOB}"
    reqs = (common.kafka_source(env, settings, topics.requests, group)
            .process(ParseRequests(topics.requests)).name("parse-requests").uid("parse-requests"))
    device_topics = [topics.device_events, topics.device_feedback]  # upstream's events + dead tokens from dispatch
    events = (common.kafka_source(env, settings, device_topics, group)
              .process(ParseDeviceEvents(",".join(device_topics), topics.compacted)).name("parse-device-events").uid("parse-device-events"))
    prefs = (common.kafka_source(env, settings, topics.preferences, group)
             .process(ParsePreferences(topics.preferences)).name("parse-preferences").uid("parse-preferences"))
    intake = (reqs.key_by(message_key, key_type=Types.STRING())
              .process(Intake(settings.dedup_window_s)).name("intake").uid("intake"))
    by_shard = (intake.get_side_output(SHARD).union(events.get_side_output(SHARD), prefs.get_side_output(SHARD))
                .key_by(first, key_type=Types.STRING())
                .process(ShardDirectory(settings), output_type=common.BYTES).name("shard-directory").uid("shard-directory"))
    pins = (intake.union(events, prefs, by_shard.get_side_output(TO_PIN)).key_by(first, key_type=Types.STRING())
            .process(PinDirectory(settings), output_type=common.BYTES).name("pin-directory").uid("pin-directory"))
    batched = (pins.get_side_output(PARTIAL).union(by_shard.get_side_output(PARTIAL)).key_by(first, key_type=Types.STRING())
               .process(Batcher(settings.batch_size), output_type=common.BYTES).name("batcher").uid("batcher"))
    small = pins.get_side_output(BUNDLE).union(by_shard.get_side_output(BUNDLE), batched.get_side_output(BUNDLE))
    bundled = (small.key_by(first, key_type=Types.STRING())
               .process(Bundler(settings.batch_size), output_type=common.BYTES).name("bundler").uid("bundler"))
    for parsed in (reqs, events, prefs, pins):
        common.sink_dlq(parsed, settings)
    for priority, lane in LANES.items():
        batches = pins.get_side_output(lane).union(*(s.get_side_output(lane) for s in (by_shard, batched, bundled)))
        batches.sink_to(common.kafka_sink(settings, topics.lane(priority))).name(topics.lane(priority))
    tallied = (by_shard.get_side_output(TALLY).key_by(first, key_type=Types.STRING())
               .process(BroadcastTally(), output_type=common.BYTES).name("broadcast-tally").uid("broadcast-tally"))
    results = intake.get_side_output(RESULTS).union(*(s.get_side_output(RESULTS) for s in (pins, by_shard, batched, tallied)))
    results.sink_to(common.kafka_sink(settings, topics.results)).name("push.results")
    by_shard.get_side_output(FEEDBACK).sink_to(common.kafka_sink(settings, topics.device_feedback)).name("device.feedback")
    return env


if __name__ == "__main__":
    # through the imported module, so Flink pickles this module's functions by reference, not by value
    from pushpipe.jobs import fanout

    common.run(fanout.build, JOB)
