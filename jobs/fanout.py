"""Fan-out job: device.events + push.requests -> push.dispatch (batches per vendor).

    device.events -> parse -+
                            +-> key (app|pin): devices state, expand -> single pin: batches
    push.requests -> parse -+                                        -> pin lists: batcher (msg|vendor)
    device.feedback (dead tokens from dispatch) joins device.events; batches go to the lane of their priority.
Bad input goes to push.dlq with its reason; pins without devices become suppressed results.

Run: python -m jobs.fanout
"""
from __future__ import annotations

from typing import Any, Iterator

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from jobs import common, devices, requests
from pushpipe.config import PRIORITIES, Settings, load
from schemas import codec

JOB = "fanout"
PARTIAL = OutputTag("partial", Types.PICKLED_BYTE_ARRAY())
RESULTS = OutputTag("results", common.BYTES)
LANES = {priority: OutputTag(f"lane-{priority}", common.BYTES) for priority in PRIORITIES}
LINGER_MS = 100


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
            carried = requests.without_pins(item)
            for pin in item["pins"]:
                yield f"{item['app_id']}|{pin}", "req", carried


class ParseDeviceEvents(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        for item in common.decode_or_dlq(JOB, self.topic, "DeviceEvent", value):
            if isinstance(item, tuple):
                yield item
            elif not item["pin"]:
                yield common.dead_letter(JOB, self.topic, value, "invalid_device_event", "device event has no pin", app_id=item["app_id"])
            else:
                yield f"{item['app_id']}|{item['pin']}", "dev", item


class PinDirectory(KeyedProcessFunction):
    """Keeps the devices of one (app, pin) and expands requests addressed to that pin."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.devices = runtime_context.get_state(ValueStateDescriptor("devices", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key, kind, record = value
        known = self.devices.value() or {}
        if kind == "dev":
            self.devices.update(devices.apply_event(known, record))
            return
        now = common.now_ms()
        pin = key.split("|", 1)[1]
        grouped = devices.targets_by_vendor(known, pin, record["environment"])
        if not grouped:
            yield RESULTS, codec.encode("DispatchResult", requests.no_devices_result(record, pin, now))
        for vendor, targets in grouped.items():
            if record["target"] == "pin":
                for part in requests.chunks(targets, self.batch_size):
                    yield LANES[record["priority"]], codec.encode("DispatchBatch", requests.batch(record, vendor, part, now))
            else:
                yield PARTIAL, (f"{record['msg_id']}|{vendor}", vendor, record, targets)


class Batcher(KeyedProcessFunction):
    """Gathers the tokens of one (message, vendor) from many pins into full batches."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.pending = runtime_context.get_state(ValueStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context) -> Iterator[tuple]:
        _, vendor, request, targets = value
        pending = self.pending.value()
        if pending is None:
            pending = (vendor, request, [])
            ctx.timer_service().register_processing_time_timer(ctx.timer_service().current_processing_time() + LINGER_MS)
        buffered = pending[2] + targets
        while len(buffered) >= self.batch_size:
            yield self._emit(vendor, request, buffered[: self.batch_size])
            buffered = buffered[self.batch_size :]
        self.pending.update((vendor, request, buffered))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[tuple]:
        pending = self.pending.value()
        self.pending.clear()
        if pending and pending[2]:
            yield self._emit(*pending)

    def _emit(self, vendor: str, request: dict, targets: list[devices.Target]) -> tuple[OutputTag, bytes]:
        batch = requests.batch(request, vendor, targets, common.now_ms())
        return LANES[request["priority"]], codec.encode("DispatchBatch", batch)


def build(settings: Settings) -> Any:
    env = common.environment(settings, JOB)
    topics = settings.topics
    reqs = common.kafka_source(env, settings, topics.requests, f"pushpipe-{JOB}").process(ParseRequests(topics.requests)).name("parse-requests").uid("parse-requests")
    device_topics = [topics.device_events, topics.device_feedback]  # upstream's events + dispatch's dead tokens
    events = common.kafka_source(env, settings, device_topics, f"pushpipe-{JOB}").process(ParseDeviceEvents(",".join(device_topics))).name("parse-device-events").uid("parse-device-events")
    for parsed in (reqs, events):
        common.sink_dlq(parsed, settings)
    expanded = (
        reqs.union(events)
        .key_by(lambda item: item[0], key_type=Types.STRING())
        .process(PinDirectory(settings.batch_size), output_type=common.BYTES)
        .name("pin-directory").uid("pin-directory")
    )
    batched = (
        expanded.get_side_output(PARTIAL)
        .key_by(lambda item: item[0], key_type=Types.STRING())
        .process(Batcher(settings.batch_size), output_type=common.BYTES)
        .name("batcher").uid("batcher")
    )
    for priority, lane in LANES.items():
        batches = expanded.get_side_output(lane).union(batched.get_side_output(lane))
        batches.sink_to(common.kafka_sink(settings, topics.lane(priority))).name(topics.lane(priority))
    expanded.get_side_output(RESULTS).sink_to(common.kafka_sink(settings, topics.results)).name("push.results")
    return env


def main() -> None:
    common.setup_logging()
    build(load()).execute(JOB)


if __name__ == "__main__":
    main()
