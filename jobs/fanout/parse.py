"""The fan-out's three parsers: Avro values in, typed messages out to the directories, bad input to push.dlq."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.datastream import ProcessFunction, RuntimeContext

from pushpipe import liveness
from pushpipe.config import Settings
from pushpipe.jobs import runtime
from pushpipe.jobs.counting import StageCounters, counting_letters
from pushpipe.jobs.deadletters import Tombstone, dead_letter, decode_or_dlq, decode_or_tombstone, tombstone_letter
from pushpipe.jobs.fanout import apprules, devices, records
from pushpipe.jobs.fanout.messages import TO_PIN, TO_SHARD, ToPin, ToShard
from pushpipe.jobs.fanout.validate import InvalidRequest, validate, without_repeats
from pushpipe.jobs.policy.classify import message_class
from pushpipe.jobs.policy.policyfile import policy_config
from pushpipe.jobs.policy.preferences import InvalidPreference, reset_event
from pushpipe.schemas import apps, codec, keys

JOB = "fanout"


@liveness.watched
class ParseRequests(ProcessFunction):
    """Valid requests, each with its message class by the app's policy (the one mapping dispatch's adapters follow)
    and its app's rules from the registry (jobs/fanout/apprules.py)."""

    def __init__(self, settings: Settings, registry: apps.AppLookup | None = None) -> None:
        self.settings, self.topic = settings, settings.topics.requests
        self.registry = registry  # None: the app registry, followed from open() (a Kafka client is never pickled)

    def open(self, runtime_context: RuntimeContext) -> None:
        self.classes = policy_config(self.settings).classes
        self.counters = StageCounters(runtime_context, "parse-requests")
        self.apps = self.registry if self.registry is not None else apps.follow(self.settings, f"{JOB} parse-requests")

    def close(self) -> None:
        follower = getattr(self, "apps", None)
        if isinstance(follower, apps.AppFollower):
            follower.close()

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from counting_letters(self.counters, self.topic, self.parse(value))

    def parse(self, value: bytes) -> Iterator[Any]:
        for item in decode_or_dlq(JOB, self.topic, "PushRequest", value):
            if isinstance(item, tuple):
                yield item
                continue
            try:
                validate(item)
            except InvalidRequest as bad:
                yield dead_letter(JOB, self.topic, value, "invalid_request", str(bad), msg_id=item["msg_id"], app_id=item["app_id"])
                continue
            try:
                item = apprules.with_app_rules(without_repeats(item), self.apps.get(item["app_id"]), self.settings.app_registry_required)
            except apprules.UnknownApp as unknown:
                yield dead_letter(JOB, self.topic, value, apprules.UNKNOWN_APP, str(unknown), msg_id=item["msg_id"], app_id=item["app_id"])
                continue
            item["message_class"] = message_class(item["category"], self.classes)
            self.counters.count("pushpipe_requests_in", target=item["target"], priority=item["priority"])
            yield routed(item)


def routed(request: dict[str, Any]) -> Any:
    """A pin push due now straight to its pin (a side output), everything else to Intake (the main output):
    one keyed hop and one Python operator call fewer for the commonest request."""
    if not records.due_now_to_one_pin(request):
        return request
    carried = {**records.without_pins(request), "taken_at": runtime.now_ms()}
    return TO_PIN, ToPin(keys.pin_key(request["app_id"], request["pins"][0]), "push", carried)


@liveness.watched
class ParseDeviceEvents(ProcessFunction):
    """Each event goes to its pin (main output) and to its token's shard (side output). A tombstone on the
    compacted device.events (keys.device_key) deletes the token: its shard forgets it and tells its pin."""

    def __init__(self, topic: str, compacted: tuple[str, ...]) -> None:
        self.topic, self.compacted = topic, compacted

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, "parse-device-events")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from counting_letters(self.counters, self.topic, self.parse(value))

    def parse(self, value: bytes) -> Iterator[Any]:
        for item in decode_or_tombstone(JOB, self.topic, "DeviceEvent", value):
            if isinstance(item, Tombstone):
                yield from self.forget(item)
            elif isinstance(item, tuple):
                yield item
            elif problem := devices.event_problem(item):
                yield dead_letter(JOB, self.topic, value, "invalid_device_event", problem, app_id=item["app_id"])
            else:
                yield ToPin(keys.user_key(item["app_id"], item["pin"], item["token"]), "device", item)
                yield TO_SHARD, ToShard(keys.shard_key(item["app_id"], item["token"]), "device", item)

    def forget(self, dead: Tombstone) -> Iterator[Any]:
        if dead.topic not in self.compacted:
            yield tombstone_letter(JOB, dead, "DeviceEvent")
            return
        try:
            app_id, token = keys.parse_device_key(dead.key)
        except keys.InvalidId as bad:
            yield tombstone_letter(JOB, dead, "DeviceEvent", f"a tombstone on {dead.topic} whose key is not app|token: {bad}")
            return
        yield TO_SHARD, ToShard(keys.shard_key(app_id, token), "forget", {"app_id": app_id, "token": token})


@liveness.watched
class ParsePreferences(ProcessFunction):
    """Each preference goes to its pin, and to every shard of its app (a pin's devices are in any of them).
    A tombstone (keys.preference_key) returns that setting to its default."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def open(self, runtime_context: RuntimeContext) -> None:
        self.counters = StageCounters(runtime_context, "parse-preferences")

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from counting_letters(self.counters, self.topic, self.parse(value))

    def parse(self, value: bytes) -> Iterator[Any]:
        for item in decode_or_tombstone(JOB, self.topic, "PreferenceEvent", value):
            if isinstance(item, tuple):
                yield item
                continue
            app_id = keys.app_of(item.key) if isinstance(item, Tombstone) else item["app_id"]
            try:
                event = self.reset(item) if isinstance(item, Tombstone) else item
                keys.check_app_id(event["app_id"])
                keys.check_pin(event["pin"])
            except (keys.InvalidId, InvalidPreference) as bad:
                yield dead_letter(JOB, self.topic, value, "invalid_preference", str(bad), app_id=app_id)
                continue
            yield ToPin(keys.pin_key(event["app_id"], event["pin"]), "preference", event)
            for key in keys.all_shard_keys(event["app_id"]):
                yield TO_SHARD, ToShard(key, "preference", event)

    @staticmethod
    def reset(dead: Tombstone) -> dict[str, Any]:
        app_id, pin, setting = keys.parse_preference_key(dead.key)
        return codec.new_record("PreferenceEvent", app_id=app_id, pin=pin, ts=runtime.now_ms(), **reset_event(setting))
