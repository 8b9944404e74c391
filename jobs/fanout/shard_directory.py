"""The shard directory, per (app, token shard): the shard's devices and the opt-outs of their users;
expands broadcasts, segments and requests to explicit tokens.

A broadcast or segment that quiet hours, daily caps or vendor quotas can touch goes from here to each
matching user (ToPin BROADCAST), whose directory holds the user's whole history; one that none of them can
touch (urgent, uncapped) is expanded here. Every shard reports how many devices matched (ShardReport).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from pushpipe import liveness
from pushpipe.jobs.fanout import records, shards
from pushpipe.jobs.fanout.apprules import VENDOR_NOT_ALLOWED, vendor_allowed
from pushpipe.jobs.fanout.buckets import DeviceBuckets
from pushpipe.jobs.fanout.directory import Directory
from pushpipe.jobs.fanout.emit import lane_batch, not_sent
from pushpipe.jobs.fanout.messages import FEEDBACK, GATHER, PICKLED, REPORT, TO_PIN, Gather, ShardReport, ToPin, ToShard
from pushpipe.jobs.fanout.placement import Placement
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.policy.decide import per_user_policy_applies
from pushpipe.jobs.policy.preferences import InvalidPreference, apply_preference, blocked_reason
from pushpipe.schemas import codec, keys, profiles

Record = dict[str, Any]
Chosen = list[tuple[str, Record]]  # (token, the shard's summary of its device)


@liveness.watched
class ShardDirectory(Directory):
    stage = "shard-directory"

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self.devices = DeviceBuckets(runtime_context.get_map_state(MapStateDescriptor("device_buckets", Types.INT(), PICKLED)))
        self.devices_per_token = runtime_context.get_map_state(MapStateDescriptor("devices", Types.STRING(), PICKLED))
        self.adopted: set[str] = set()  # shard keys this worker has looked at for entries per token (an app's 32 each)
        # pin -> its blocking preferences (opt-outs, unsubscribe), only for pins that have any
        self.blocking = runtime_context.get_map_state(MapStateDescriptor("blocking", Types.STRING(), PICKLED))

    def process_element(self, value: ToShard, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key, kind, record = value
        if key not in self.adopted:
            self.devices.adopt(self.devices_per_token)
            self.adopted.add(key)
        if kind == "device":
            yield from self.update(record)
        elif kind == "preference":
            self.prefer(record)
        elif kind == "token":
            yield from self.explicit(record)
        elif kind == "forget":
            yield from self.forget(record["app_id"], record["token"])
        else:
            yield from self.everyone(record, key)

    def update(self, event: Record) -> Iterator[Any]:
        if event["previous_token"]:
            self.devices.remove(event["previous_token"])
        entry = self.devices.entry(event["token"])  # after the previous token's removal: it may share the bucket
        known = entry.summary
        owner = shards.receipt_owner(known, event)
        if owner is not None:  # back through device.feedback with its pin, for the pin's directory and this shard
            yield FEEDBACK, codec.encode("DeviceEvent", {**event, "pin": owner})
            return
        moved = shards.moved_from(known, event)
        if moved is not None:  # the token changed pin (or left or gained one): its old user stops targeting it
            unbind = codec.new_record("DeviceEvent", **{**event, "kind": "unbind", "pin": moved, "reason": "moved"})
            yield FEEDBACK, codec.encode("DeviceEvent", unbind)
        after = shards.summary_after(known, event)
        if after is not None:
            entry.put(after)
        elif known is not None:
            entry.remove()

    def forget(self, app_id: str, token: str) -> Iterator[Any]:
        """A token deleted by a tombstone: gone from the shard, and its pin told through device.feedback."""
        entry = self.devices.entry(token)
        known = entry.summary
        if known is None:
            return
        entry.remove()
        gone = codec.new_record("DeviceEvent", app_id=app_id, pin=known["pin"], token=token, kind="deregister",
                                vendor=known["vendor"], platform=known["platform"], reason="tombstone", ts=self.clock())
        yield FEEDBACK, codec.encode("DeviceEvent", gone)

    def prefer(self, event: Record) -> None:
        known = self.blocking.get(event["pin"])
        try:
            after = shards.blocking_preferences(apply_preference(known, event))
        except InvalidPreference:
            return  # the pin directory dead-letters it, once
        if after:
            self.blocking.put(event["pin"], after)
        elif known is not None:
            self.blocking.remove(event["pin"])

    def explicit(self, request: Record) -> Iterator[Any]:
        token = request["tokens"][0]
        device = self.devices.get(token)
        if device is None or not device["enabled"]:
            reason = "unknown_token" if device is None else "switched_off"
            yield from not_sent(request, f"token:{token}", [Unsent(token, "suppressed", reason)], self.clock())
        elif device["environment"] != request["environment"]:
            yield from not_sent(request, f"token:{token}", [Unsent(token, "suppressed", "test_push_to_production_device")], self.clock())
        elif not vendor_allowed(request, device["vendor"]):
            yield from not_sent(request, f"token:{token}", [Unsent(token, "suppressed", VENDOR_NOT_ALLOWED)], self.clock())
        else:
            yield from self.grouped(request, [(token, device)], f"token:{token}", batcher=True)

    def everyone(self, request: Record, shard: str) -> Iterator[Any]:
        """A broadcast or segment in this shard: the matching devices, those skipped counted per reason (not
        listed), and a report of how many matched, so that a message that matches nowhere says so."""
        chosen, skipped = shards.select(self.devices.items(), request)
        position = f"shard:{keys.shard_of(shard)}"
        if skipped:
            counted = [Unsent("", "suppressed", reason, number=n) for reason, n in sorted(skipped.items())]
            yield from not_sent(request, f"{position}:skipped", counted, self.clock())
        yield REPORT, ShardReport(keys.message_key(request["app_id"], request["msg_id"]), request, len(chosen))
        if per_user_policy_applies(request, self.policy):
            for user in sorted({keys.user_key(request["app_id"], device["pin"], token) for token, device in chosen}):
                yield TO_PIN, ToPin(user, "broadcast", request)
        else:
            yield from self.grouped(request, chosen, position, batcher=False)

    def allowed(self, request: Record, chosen: Chosen) -> tuple[Chosen, list[Unsent]]:
        """The devices whose user's preferences allow this message, and the others with the reason."""
        blocking = dict(self.blocking.items())  # few pins have any: read once per request
        if not blocking:
            return chosen, []
        allowed, blocked = [], []
        for token, device in chosen:
            prefs = blocking.get(device["pin"])
            reason = prefs and blocked_reason(prefs, request["category"], device["vendor"], self.policy.classes)
            if reason:
                blocked.append(Unsent(token, "suppressed", reason))
            else:
                allowed.append((token, device))
        return allowed, blocked

    def grouped(self, request: Record, chosen: Chosen, position: str, batcher: bool) -> Iterator[Any]:
        chosen, unsent = self.allowed(request, chosen)
        placement = Placement(request, self.templates)
        for token, device in chosen:
            target = (token, device["pin"], device["fallback_token"] or "", profiles.encode(device))
            why_not = placement.place(target, device["vendor"], device["locale"] or "")
            if why_not:
                unsent.append(Unsent(token, "rejected", why_not))
        now = self.clock()
        if unsent:
            yield from not_sent(request, f"{position}:unsent", unsent, now)
        for (vendor, text), (rendered_request, targets) in placement.groups.items():
            self.expanded(vendor, len(targets))
            if batcher:
                yield GATHER, Gather(keys.group_key(request["app_id"], request["msg_id"], vendor, text), vendor, rendered_request, targets)
            else:
                for n, part in enumerate(records.chunks(targets, self.batch_size)):
                    yield lane_batch(rendered_request, vendor, part, self.batch_size, f"{position}:{n}", now)
