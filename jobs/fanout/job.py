"""The fan-out job's graph: its operators (one module each) wired by their keys and side outputs."""
from __future__ import annotations

from typing import Any

from pyflink.datastream import StreamExecutionEnvironment

from pushpipe.config import Settings
from pushpipe.jobs import runtime
from pushpipe.jobs.fanout.batcher import Batcher
from pushpipe.jobs.fanout.bundler import Bundler
from pushpipe.jobs.fanout.intake import Intake
from pushpipe.jobs.fanout.messages import FEEDBACK, GATHER, LANES, REPORT, RESULTS, TO_BUNDLER, TO_PIN, TO_SHARD, key_of
from pushpipe.jobs.fanout.parse import JOB as JOB
from pushpipe.jobs.fanout.parse import ParseDeviceEvents, ParsePreferences, ParseRequests
from pushpipe.jobs.fanout.pin_directory import PinDirectory
from pushpipe.jobs.fanout.shard_directory import ShardDirectory
from pushpipe.jobs.fanout.tally import BroadcastTally
from pushpipe.schemas import keys

BYTES = runtime.BYTES
def message_key(request: dict[str, Any]) -> str:
    return keys.message_key(request["app_id"], request["msg_id"])


def build(settings: Settings) -> StreamExecutionEnvironment:
    # The device directory grows with the install base: RocksDB with incremental checkpoints writes only
    # what changed, where the heap backend would copy every device on every checkpoint.
    env = runtime.environment(settings, JOB, runtime.ROCKSDB_STATE, mode="thread")
    topics, group = settings.topics, f"pushpipe-{JOB}"
    reqs = (runtime.kafka_source(env, settings, topics.requests, group)
            .process(ParseRequests(settings)).name("parse-requests").uid("parse-requests"))
    device_topics = [topics.device_events, topics.device_feedback]  # upstream's events + dead tokens from dispatch
    events = (runtime.kafka_source(env, settings, device_topics, group)
              .process(ParseDeviceEvents(",".join(device_topics), topics.compacted)).name("parse-device-events").uid("parse-device-events"))
    prefs = (runtime.kafka_source(env, settings, topics.preferences, group)
             .process(ParsePreferences(topics.preferences)).name("parse-preferences").uid("parse-preferences"))
    side = runtime.side_output
    intake = (runtime.keyed(message_key, reqs)
              .process(Intake(settings.dedup_window_s)).name("intake").uid("intake"))
    by_shard = (runtime.keyed(key_of, side(intake, TO_SHARD), side(events, TO_SHARD), side(prefs, TO_SHARD))
                .process(ShardDirectory(settings), output_type=BYTES).name("shard-directory").uid("shard-directory"))
    to_pins = (side(reqs, TO_PIN), side(by_shard, TO_PIN))  # pin pushes due now, broadcasts
    pins = (runtime.keyed(key_of, intake, events, prefs, *to_pins)
            .process(PinDirectory(settings), output_type=BYTES).name("pin-directory").uid("pin-directory"))
    batched = (runtime.keyed(key_of, side(pins, GATHER), side(by_shard, GATHER))
               .process(Batcher(settings.batch_size), output_type=BYTES).name("batcher").uid("batcher"))
    small = (side(s, TO_BUNDLER) for s in (pins, by_shard, batched))
    bundled = (runtime.keyed(key_of, *small)
               .process(Bundler(settings.batch_size), output_type=BYTES).name("bundler").uid("bundler"))
    for parsed in (reqs, events, prefs, pins):
        runtime.sink_dlq(parsed, settings)
    for priority, lane in LANES.items():
        batches = side(pins, lane).union(*(side(s, lane) for s in (by_shard, batched, bundled)))
        batches.sink_to(runtime.kafka_sink(settings, topics.lane(priority))).name(topics.lane(priority))
    tallied = (runtime.keyed(key_of, side(by_shard, REPORT))
               .process(BroadcastTally(), output_type=BYTES).name("broadcast-tally").uid("broadcast-tally"))
    results = side(intake, RESULTS).union(*(side(s, RESULTS) for s in (pins, by_shard, batched, tallied)))
    results.sink_to(runtime.kafka_sink(settings, topics.results)).name("push.results")
    side(by_shard, FEEDBACK).sink_to(runtime.kafka_sink(settings, topics.device_feedback)).name("device.feedback")
    return env
