"""The broadcast tally, per (app, message) of a broadcast or segment: adds up the shards' reports of
matching devices, and when every shard has reported and none matched, ends the message with
"no_devices_matched"."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Time
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from pushpipe import liveness
from pushpipe.jobs import runtime
from pushpipe.jobs.fanout.emit import not_sent
from pushpipe.jobs.fanout.messages import PICKLED, ShardReport
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.schemas import keys

TALLY_TTL = Time.days(2)


@liveness.watched
class BroadcastTally(KeyedProcessFunction):
    clock = staticmethod(runtime.now_ms)

    def open(self, runtime_context: RuntimeContext) -> None:
        tally = ValueStateDescriptor("tally", PICKLED)  # (shards reported, devices matched)
        tally.enable_time_to_live(runtime.ttl(TALLY_TTL))
        self.tally = runtime_context.get_state(tally)

    def process_element(self, value: ShardReport, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        _, request, matched = value
        reported, total = self.tally.value() or (0, 0)
        reported, total = reported + 1, total + matched
        if reported < keys.SHARDS:
            self.tally.update((reported, total))
            return
        self.tally.clear()
        if not total:
            yield from not_sent(request, "no_devices", [Unsent("", "suppressed", "no_devices_matched")], self.clock())
