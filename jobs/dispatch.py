"""Dispatch job: push.dispatch.{high,normal,low} + push.retry -> vendor APIs (async I/O) -> results.

    lanes (a source each) ─────────────────────────────────┐
    push.retry ─ parse ─ key batch: hold until not_before ─┴─ key slot: parse and send (event loop) ─> push.results
                                                                     ├─> push.retry (long retry delays)
                                                                     ├─> device.feedback (dead tokens)
                                                                     └─> push.dlq (a record neither bundle nor batch)
Sending (ledger, exits, rate limits, retries, fallback) is in jobs/sender.py; the policy in
jobs/dispatch_policy.py. Each lane has its own source, which the operator reads in turn, and the
rate limiters serve high priority first, so a low-priority flood cannot starve high priority.
A lane record is a DispatchBundle (fan-out packs single-pin batches together): its batches are sent
at once. The Python runs in thread mode, inside the JVM (see `Send`).

Run: python -m pushpipe.jobs.dispatch
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from pushpipe import liveness
from pushpipe.config import Settings
from pushpipe.connectors.config import vendor_configs
from pushpipe.connectors.registry import SPECS
from pushpipe.gateway import signing
from pushpipe.jobs import deadletters, dispatch_policy, metrics, runtime
from pushpipe.jobs.lanes import LANE_RECORD_BATCHES
from pushpipe.jobs.ledger import SendLedger
from pushpipe.jobs.sender import Sender, now_ms, subset
from pushpipe.jobs.slots import SlotOf
from pushpipe.schemas import apps, codec

JOB = "dispatch"
# Lane records in flight: at most 64 batches (4 records of up to 16). Records past them wait in Kafka, where the
# operator reads its lanes in turn, so a new high-priority batch waits behind at most 64 others, not a low-priority flood.
CAPACITY = max(1, 64 // LANE_RECORD_BATCHES)
TIMEOUT_S = 600.0  # a bundle still being sent then (rate limit, outage): its batches go to push.retry
POLL_MS = 2  # how often a key with sends in flight looks for finished ones: the latency it adds, at most
RETRY = OutputTag("retry", runtime.BYTES)
FEEDBACK = OutputTag("feedback", runtime.BYTES)
SIDE_OUTPUTS = {"retry": RETRY, "feedback": FEEDBACK, "dlq": deadletters.DLQ}
LANES = "push.dispatch.*"  # where a record that is neither bundle nor batch came from, as its dead letter says
log = logging.getLogger("pushpipe.dispatch")
T = TypeVar("T")


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

class SendBundle:
    """Sends lane records (or due retries) through Sender: a record parsed, its batches sent concurrently, on an
    event loop of its own (`LoopThread`). `Send` runs it inside Flink."""

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    def open(self, runtime_context: RuntimeContext) -> None:
        # Records go between the task's thread and the event loop's: with the default 5 ms GIL switch interval each
        # hand-off can wait 5 ms.
        sys.setswitchinterval(0.0002)
        runtime.quiet_logs()
        policy = dispatch_policy.load(self.settings.dispatch_file)
        index, subtasks = runtime.subtask(runtime_context)
        ledger = SendLedger(self.settings.run_dir / "ledger" / f"dispatch-{index}.db")
        configs = vendor_configs(self.settings)
        metrics.watch_expiry(configs)
        # the app registry, followed by a daemon thread made here (a Kafka client is never pickled)
        self.apps = apps.follow(self.settings, JOB)
        # each subtask sends any (app, vendor)'s batches: it takes its share of every rate limit
        share = 1 / subtasks
        self.sender = Sender(policy, configs, ledger, receipt_callbacks(self.settings, self.apps), rate_share=share)
        # one /metrics per process: in thread mode one for all subtasks (their Python is one), in process mode a worker's
        metrics.serve(self.settings.dispatch_metrics_port + (0 if runtime.in_jvm(runtime_context) else index))

    async def outputs(self, element: bytes) -> list[tuple[str, bytes]]:
        """What sending one lane record gives: ("result" | "retry" | "feedback" | "dlq", payload) pairs."""
        batches = parse_bundle(element)
        if isinstance(batches, tuple):  # a dead letter
            return [("dlq", batches[1])]
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

    async def aclose(self) -> None:
        sender = getattr(self, "sender", None)  # none when open() failed before it
        if sender is not None:
            await sender.aclose()

    def close(self) -> None:
        registry = getattr(self, "apps", None)  # none when open() failed before it
        if registry is not None:
            registry.close()


def _late(sending: asyncio.Future[Any]) -> None:
    """A bundle's send that finished after its timeout: its results were given up (its batches were retried)."""
    error = None if sending.cancelled() else sending.exception()
    if error is not None:
        log.warning("a bundle's send, finished after its timeout, failed: %s", error)


class LoopThread:
    """An asyncio event loop running in a daemon thread of its own, for coroutines submitted from other threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, last: Coroutine[Any, Any, Any] | None = None, timeout_s: float = 5.0) -> None:
        """Runs `last` (closing clients) if given, then stops the loop; best effort: the worker is going away."""
        try:
            if last is not None:
                self.submit(last).result(timeout=timeout_s)
        except Exception as exc:
            log.warning("closing the event loop: %s", exc)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout_s)
            if not self.thread.is_alive():  # the sends still pending are cancelled, not left to be destroyed pending
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.close()


_open_sends: dict[int, Send] = {}  # subtask index -> the Send open in this Python (thread mode: one for all subtasks)


@liveness.watched
class Send(KeyedProcessFunction):
    """Lane records sent without holding up the task: each is submitted to the event loop, kept in keyed state
    until its send finished, and its outputs emitted by a processing-time timer that polls the key's sends every
    POLL_MS. The state is what a checkpoint holds of the sends in flight: after a restore, the first timer of each
    key submits its records again (the ledger skips what went out).

    Not PyFlink's async I/O: that runs only in process mode, where each PyFlink bundle (up to 20 ms) costs several
    ms of Beam's per-bundle work in the worker and waits for every call in flight before it ends. Here the Python
    runs inside the JVM (thread mode), a call per record and per poll."""

    def __init__(self, settings: Settings, capacity: int = CAPACITY) -> None:
        self.sending = SendBundle(settings)
        self.capacity = capacity

    def open(self, runtime_context: RuntimeContext) -> None:
        # A failover in thread mode opens a new instance in the same Python without closing the one it replaces
        # (seen: a send loop and an app follower left behind per failover), so that one is closed here.
        self.index, _ = runtime.subtask(runtime_context)
        replaced = _open_sends.pop(self.index, None)
        if replaced is not None:
            replaced.close()
        _open_sends[self.index] = self
        self.sending.open(runtime_context)
        self.loop = LoopThread("dispatch-send")
        self.inflight = runtime_context.get_map_state(MapStateDescriptor("inflight", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.room = threading.BoundedSemaphore(self.capacity)  # sends in flight, across keys
        self.futures: dict[str, dict[str, concurrent.futures.Future[list[tuple[str, bytes]]]]] = {}
        self.resumed: set[str] = set()  # keys whose restored sends were submitted again (or that had none)

    def process_element(self, value: bytes, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        key = ctx.get_current_key()
        self.resume(key)
        record_id = uuid.uuid4().hex
        self.inflight.put(record_id, value)
        self.submit(key, record_id, value)
        self.poll_later(ctx)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        key = ctx.get_current_key()
        self.resume(key)
        futures = self.futures.get(key, {})
        for record_id in [r for r, future in futures.items() if future.done()]:
            yield from routed(futures.pop(record_id).result())
            self.inflight.remove(record_id)
        if futures:
            self.poll_later(ctx)

    def resume(self, key: str) -> None:
        """The first call of a key since open(): its sends in flight at the checkpoint restored, submitted again."""
        if key in self.resumed:
            return
        self.resumed.add(key)
        for record_id, value in list(self.inflight.items()):
            self.submit(key, record_id, value)

    def submit(self, key: str, record_id: str, value: bytes) -> None:
        self.room.acquire()  # at capacity, the task waits here: backpressure on the sources
        future = self.loop.submit(self.sending.outputs(value))
        future.add_done_callback(lambda _: self.room.release())
        self.futures.setdefault(key, {})[record_id] = future

    @staticmethod
    def poll_later(ctx: KeyedProcessFunction.Context) -> None:
        """A timer at the next POLL_MS boundary: one per key and period, however many records came in it."""
        now = ctx.timer_service().current_processing_time()
        ctx.timer_service().register_processing_time_timer(now - now % POLL_MS + POLL_MS)

    def close(self) -> None:
        if _open_sends.get(getattr(self, "index", -1)) is self:
            del _open_sends[self.index]
        loop = getattr(self, "loop", None)  # none when open() failed before it
        if loop is not None and loop.thread.is_alive():  # not stopped yet
            loop.stop(self.sending.aclose())
        self.sending.close()


def routed(outputs: list[tuple[str, bytes]]) -> Iterator[Any]:
    """Results to the main output; retries, device feedback and dead letters to their side outputs."""
    for kind, payload in outputs:
        yield payload if kind == "result" else (SIDE_OUTPUTS[kind], payload)


def build(settings: Settings) -> Any:
    # validated here, so a bad file stops the job at once with its reason instead of failing every restart
    dispatch_policy.load(settings.dispatch_file)
    vendor_configs(settings)
    env = runtime.environment(settings, JOB, mode="thread")
    topics = settings.topics
    group = f"pushpipe-{JOB}"
    # One source per lane: the operator reads its inputs in turn, so a lane's backlog does not queue the others.
    lanes = [runtime.kafka_source(env, settings, topic, group) for topic in topics.lanes]
    retries = runtime.kafka_source(env, settings, topics.retry, group).process(ParseBatches(topics.retry)).name("parse-retries").uid("parse-retries")
    due = (runtime.keyed(lambda b: f"{b['batch_id']}/{b['attempt']}", retries)
           .process(HoldUntilDue(), output_type=runtime.BYTES).name("hold-until-due").uid("hold-until-due"))
    # keyed by the record's own bytes (jobs/slots.py): a record read again goes to the subtask whose ledger saw it
    slot_of = SlotOf(settings.parallelism(JOB))
    routed = (runtime.keyed(slot_of, due, *lanes)
              .process(Send(settings), output_type=runtime.BYTES).name("send").uid("send-keyed"))
    for parsed in (routed, retries):
        runtime.sink_dlq(parsed, settings)
    routed.sink_to(runtime.kafka_sink(settings, topics.results)).name("push.results")
    runtime.side_output(routed, RETRY).sink_to(runtime.kafka_sink(settings, topics.retry)).name("push.retry")
    runtime.side_output(routed, FEEDBACK).sink_to(runtime.kafka_sink(settings, topics.device_feedback)).name("device.feedback")
    return env


if __name__ == "__main__":
    # through the imported module, so Flink pickles this module's functions by reference, not by value
    from pushpipe.jobs import dispatch

    runtime.run(dispatch.build, JOB)
