"""Dispatch job: push.dispatch.{high,normal,low} + push.retry -> vendor APIs (async I/O) -> results.

    lanes (a source each) ─────────────────────────────────┐
    push.retry ─ parse ─ key batch: hold until not_before ─┴─> parse and send (async) ─> push.results
                                                                     ├─> push.retry (long retry delays)
                                                                     ├─> device.feedback (dead tokens)
                                                                     └─> push.dlq (a record neither bundle nor batch)
Sending (ledger, exits, rate limits, retries, fallback) is in jobs/sender.py; the policy in
jobs/dispatch_policy.py. Each lane has its own source, which the operator reads in turn, and the
rate limiters serve high priority first, so a low-priority flood cannot starve high priority.
A lane record is a DispatchBundle (fan-out packs single-pin batches together): one async I/O
element sends all its batches at once.

Run: python -m pushpipe.jobs.dispatch
"""
from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from pyflink.common import Time, Types
from pyflink.datastream import AsyncDataStream, AsyncFunction, KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from pushpipe import liveness
from pushpipe.config import Settings
from pushpipe.connectors.config import vendor_configs
from pushpipe.connectors.registry import SPECS
from pushpipe.gateway import signing
from pushpipe.jobs import deadletters, dispatch_policy, metrics, runtime
from pushpipe.jobs.lanes import LANE_RECORD_BATCHES
from pushpipe.jobs.ledger import SendLedger
from pushpipe.jobs.sender import Sender, now_ms, subset
from pushpipe.schemas import apps, codec

JOB = "dispatch"
CAPACITY = 200  # lane records in flight
# PyFlink ends each of its bundles by waiting for every call in flight, and hands over the next one
# only then. Small bundles keep a new high-priority batch from waiting behind a low-priority crowd:
# a PyFlink bundle holds at most 64 batches (4 lane records of up to 16).
PYFLINK_BUNDLE = max(1, 64 // LANE_RECORD_BATCHES)
TIMEOUT_S = 600.0  # a bundle still being sent then (rate limit, outage): its batches go to push.retry
# PyFlink times each element (a lane record) out with a thread of its own, a threading.Timer: ~110 µs of CPU to
# start and cancel (measured), where an asyncio wait costs ~19. So no PyFlink timeout: SendBundle times itself.
NO_PYFLINK_TIMEOUT = Time.milliseconds(0)
RETRY = OutputTag("retry", runtime.BYTES)
FEEDBACK = OutputTag("feedback", runtime.BYTES)
SIDE_OUTPUTS = {"retry": RETRY, "feedback": FEEDBACK, "dlq": deadletters.DLQ}
LANES = "push.dispatch.*"  # where a record that is neither bundle nor batch came from, as its dead letter says
log = logging.getLogger("pushpipe.dispatch")


@liveness.watched
class ParseBatches(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from deadletters.decode_or_dlq(JOB, self.topic, "DispatchBatch", value)


def parse_bundle(value: bytes, topic: str = LANES) -> list[dict[str, Any]] | tuple[OutputTag, bytes]:
    """A lane's DispatchBundle, or one DispatchBatch (a due retry, or a lane record from before bundles), as a list of
    batches; a dead letter (a DLQ side output) if it is neither."""
    single = codec.record_name(value) == "DispatchBatch"
    [item] = deadletters.decode_or_dlq(JOB, topic, "DispatchBatch" if single else "DispatchBundle", value)
    if isinstance(item, tuple):
        return item
    if single:
        return [item]
    return item["batches"] or deadletters.dead_letter(JOB, topic, value, "empty_bundle", "a DispatchBundle without batches")


@liveness.watched
class HoldUntilDue(KeyedProcessFunction):
    """Keeps a retry batch in state until its not_before time (a Flink timer, so it survives restarts)."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.batch = runtime_context.get_state(ValueStateDescriptor("batch", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, batch: dict[str, Any], ctx: KeyedProcessFunction.Context) -> Iterator[bytes]:
        if batch["not_before"] <= now_ms():
            yield codec.encode("DispatchBatch", batch)
            return
        self.batch.update(batch)
        ctx.timer_service().register_processing_time_timer(batch["not_before"])

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[bytes]:
        batch = self.batch.value()
        self.batch.clear()
        if batch is not None:
            yield codec.encode("DispatchBatch", batch)


def receipt_callbacks(settings: Settings, registry: apps.AppLookup) -> Callable[[str, str], str] | None:
    """callback_url(vendor, app) for the vendors that take a receipt URL with each send (gateway/signing.py), signed
    with the app's key as the registry has it now (so a rotated callback secret signs the next sends); None without
    the receipt key (`pushpipe up` makes it): sends then carry no callback, and those vendors post none."""
    if not settings.receipt_key_file.exists():
        log.warning("no receipt key at %s: sends carry no receipt callback URL", settings.receipt_key_file)
        return None
    key = signing.load_key(settings.receipt_key_file)
    per_message = {vendor.value for vendor, spec in SPECS.items() if spec.receipts == "message"}
    urls: dict[tuple[str, str, str], str] = {}  # (vendor, app, its callback salt): the URL

    def callback_url(vendor: str, app_id: str) -> str:
        if vendor not in per_message:
            return ""
        app = registry.get(app_id)
        cached = (vendor, app_id, app.callback_salt if app else "")
        if cached not in urls:
            url = signing.callback_url(settings.gateway_url, signing.key_for(key, app), vendor, app_id)
            if len(url.encode()) > signing.CALLBACK_MAX_BYTES:
                log.warning("no receipts from %s for app %s: its callback URL would be %d bytes, over %d (shorten gateway_url)",
                            vendor, app_id, len(url.encode()), signing.CALLBACK_MAX_BYTES)
                url = ""
            urls[cached] = url
        return urls[cached]

    return callback_url

class SendBundle(AsyncFunction):
    """PyFlink's async I/O around Sender: a lane record (or a due retry) parsed, its batches sent concurrently.

    Parsed here, not by an operator before it: PyFlink cannot chain a Python operator into an async one, and in
    process mode each Python operator holds its records for a bundle of its own (up to 20 ms, jobs/runtime.py) and
    pays Beam's per-bundle work (a control message, the data channel, a state sampler thread) for each.
    Nothing is in flight at a checkpoint (PyFlink finishes the bundle, waiting for every call, before the barrier),
    so no element of another shape is ever restored here."""

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    def open(self, runtime_context: RuntimeContext) -> None:
        # The async operator hands records between threads (reader, event loop, emitter, timers):
        # with the default 5 ms GIL switch interval each hand-off can wait 5 ms.
        sys.setswitchinterval(0.0002)
        runtime.quiet_client_logs()
        policy = dispatch_policy.load(self.settings.dispatch_file)
        ledger = SendLedger(self.settings.run_dir / "ledger" / f"dispatch-{runtime_context.get_index_of_this_subtask()}.db")
        configs = vendor_configs(self.settings)
        metrics.watch_expiry(configs)
        # the app registry, followed by a daemon thread made here (a Kafka client is never pickled)
        self.apps = apps.follow(self.settings, JOB)
        # each subtask sends any (app, vendor)'s batches: it takes its share of every rate limit
        share = 1 / runtime_context.get_number_of_parallel_subtasks()
        self.sender = Sender(policy, configs, ledger, receipt_callbacks(self.settings, self.apps), rate_share=share)
        self.loop: asyncio.AbstractEventLoop | None = None
        metrics.serve(self.settings.dispatch_metrics_port + runtime_context.get_index_of_this_subtask())

    async def async_invoke(self, element: bytes) -> list[tuple[str, bytes]]:
        batches = parse_bundle(element)
        if isinstance(batches, tuple):  # a dead letter
            return [("dlq", batches[1])]
        self.loop = asyncio.get_running_loop()
        sending = asyncio.ensure_future(self.send(batches))
        done, _ = await asyncio.wait({sending}, timeout=self.timeout_s)
        if done:
            return sending.result()
        # left to finish, not cancelled: what it sends is settled in the ledger, so the retries skip it
        sending.add_done_callback(_late)
        return self.timeout(batches)

    async def send(self, batches: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        inflight = metrics.INFLIGHT.labels(batches[0]["priority"])  # a bundle holds one lane's batches
        inflight.inc(len(batches))
        try:
            sent = await asyncio.gather(*(self.sender.dispatch(batch) for batch in batches))
            return [output for outputs in sent for output in outputs]
        finally:
            inflight.dec(len(batches))

    def timeout(self, batches: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        """Nothing is lost: batches that waited too long are sent again later (the ledger skips what went out)."""
        log.warning("bundle of %d batch(es), first %s, timed out; scheduling retries", len(batches), batches[0]["batch_id"])
        retry_at = now_ms() + 30_000
        return [("retry", codec.encode("DispatchBatch", subset(b, b["tokens"], b["attempt"] + 1, retry_at))) for b in batches]

    def close(self) -> None:
        if self.loop is not None and self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.sender.aclose(), self.loop).result(timeout=5)
            except Exception as exc:  # closing is best effort: the worker is going away
                log.warning("closing adapters: %s", exc)
        registry = getattr(self, "apps", None)  # none when open() failed before it
        if registry is not None:
            registry.close()


def _late(sending: asyncio.Future[Any]) -> None:
    """A bundle's send that finished after its timeout: its results were given up (its batches were retried)."""
    error = None if sending.cancelled() else sending.exception()
    if error is not None:
        log.warning("a bundle's send, finished after its timeout, failed: %s", error)


@liveness.watched
class Route(ProcessFunction):
    """Results to the main output; retries, device feedback and dead letters to their side outputs."""

    def process_element(self, value: tuple[str, bytes], ctx: ProcessFunction.Context) -> Iterator[Any]:
        kind, payload = value
        if kind == "result":
            yield payload
        else:
            yield SIDE_OUTPUTS[kind], payload


def build(settings: Settings) -> Any:
    # validated here, so a bad file stops the job at once with its reason instead of failing every restart
    dispatch_policy.load(settings.dispatch_file)
    vendor_configs(settings)
    env = runtime.environment(settings, JOB, {"python.fn-execution.bundle.size": str(PYFLINK_BUNDLE)})
    # Each subtask (settings.parallelism) reads its own lane partitions, and retries are keyed by batch: a replayed batch
    # comes back to the subtask whose send ledger saw it.
    topics = settings.topics
    group = f"pushpipe-{JOB}"
    # One source per lane: the operator reads its inputs in turn, so a lane's backlog does not queue the others.
    lanes = [runtime.kafka_source(env, settings, topic, group) for topic in topics.lanes]
    retries = runtime.kafka_source(env, settings, topics.retry, group).process(ParseBatches(topics.retry)).name("parse-retries").uid("parse-retries")
    due = (retries.key_by(lambda b: f"{b['batch_id']}/{b['attempt']}", key_type=Types.STRING())
           .process(HoldUntilDue(), output_type=runtime.BYTES).name("hold-until-due").uid("hold-until-due"))
    sent = AsyncDataStream.unordered_wait(due.union(*lanes), SendBundle(settings), NO_PYFLINK_TIMEOUT, CAPACITY)
    routed = sent.name("send").uid("send").process(Route(), output_type=runtime.BYTES).name("route").uid("route")
    for parsed in (routed, retries):
        runtime.sink_dlq(parsed, settings)
    routed.sink_to(runtime.kafka_sink(settings, topics.results)).name("push.results")
    routed.get_side_output(RETRY).sink_to(runtime.kafka_sink(settings, topics.retry)).name("push.retry")
    routed.get_side_output(FEEDBACK).sink_to(runtime.kafka_sink(settings, topics.device_feedback)).name("device.feedback")
    return env


if __name__ == "__main__":
    # through the imported module, so Flink pickles this module's functions by reference, not by value
    from pushpipe.jobs import dispatch

    runtime.run(dispatch.build, JOB)
