"""Lane bundles: which batches the fan-out bundles, how the Bundler packs them, how dispatch reads them.

The Bundler runs here in tests/flink_fakes.Harness (in-memory keyed state, a fake clock); the real
stack runs it in tests/test_fanout_e2e.py (single-pin requests sharing lane records).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time

from flink_fakes import Harness
from pushpipe.config import load
from pushpipe.jobs.deadletters import DLQ
from pushpipe.jobs.dispatch import CAPACITY, POLL_MS, RETRY, Send, SendBundle, parse_bundle
from pushpipe.jobs.fanout import records
from pushpipe.jobs.fanout.bundler import BUNDLE_LINGER_MS, Bundler
from pushpipe.jobs.fanout.emit import lane_batch
from pushpipe.jobs.fanout.messages import LANES, TO_BUNDLER, SmallBatch
from pushpipe.jobs.lanes import LANE_RECORD_BATCHES, LANE_RECORD_BYTES
from pushpipe.producer import push_request
from pushpipe.schemas import codec, keys, profiles

KAFKA_RECORD_LIMIT = 1024 * 1024


def request(priority: str = "normal") -> dict:
    return {**push_request("app", ["u"], "t", "b", priority=priority), "created_at": 1_000}


def batch(tokens: int = 1, priority: str = "normal") -> dict:
    return records.batch(request(priority), "apns", [(f"t{i}", "u", "", "") for i in range(tokens)], 2_000, f"test:{tokens}")


def small(tokens: int = 1) -> SmallBatch:
    return SmallBatch("normal|app|apns", "normal", tokens, codec.body("DispatchBatch", batch(tokens)))


def bundled(output: tuple) -> list[dict]:
    tag, payload = output
    assert tag is LANES["normal"]
    return codec.decode("DispatchBundle", payload)["batches"]


def test_a_small_batch_goes_to_the_bundler_keyed_by_lane_app_and_vendor() -> None:
    tag, (key, priority, tokens, body) = lane_batch(request("high"), "apns", [("t", "u", "", "")], 1000, "pin:u:0", 2_000)
    assert tag is TO_BUNDLER and key == "high|app|apns" and (priority, tokens) == ("high", 1)
    [small] = codec.decode("DispatchBundle", codec.encode_array("DispatchBundle", [body]))["batches"]
    assert small["tokens"] == ["t"] and small["priority"] == "high"


def test_a_batch_of_half_a_batch_or_more_goes_alone() -> None:
    tag, payload = lane_batch(request(), "apns", [(f"t{i}", "u", "", "") for i in range(500)], 1000, "shard:0:0", 2_000)
    assert tag is LANES["normal"]
    [alone] = codec.decode("DispatchBundle", payload)["batches"]
    assert len(alone["tokens"]) == 500


def busy(h: Harness) -> None:
    """The lane of small() just sent a bundle: the batches that follow within the linger gather."""
    [alone] = h.process(small())
    assert len(bundled(alone)) == 1


def test_a_batch_on_a_quiet_lane_goes_at_once_and_those_after_it_gather() -> None:
    h = Harness(Bundler(1000))
    [alone] = h.process(small())  # nothing was sent on the lane: no wait
    assert len(bundled(alone)) == 1 and h.timers == set()
    assert h.process(small()) == [] and len(h.timers) == 1, "a batch right after it waits for others"
    [gathered] = h.advance(BUNDLE_LINGER_MS)
    assert len(bundled(gathered)) == 1
    h.advance(BUNDLE_LINGER_MS)
    [again] = h.process(small())  # quiet for the linger since: at once again
    assert len(bundled(again)) == 1


def test_the_linger_timer_sends_what_gathered() -> None:
    h = Harness(Bundler(1000))
    busy(h)
    outputs = [out for _ in range(3) for out in h.process(small())]
    assert outputs == [] and h.timers == {(h.now + BUNDLE_LINGER_MS, "normal|app|apns")}, "one timer, from the first batch"
    assert not h.advance(BUNDLE_LINGER_MS - 1)
    [out] = h.advance(1)
    assert len(bundled(out)) == 3
    assert h.advance(10_000) == [] and h.state("bodies", "normal|app|apns").get() == []


def test_a_full_bundle_goes_at_once_and_cancels_its_timer() -> None:
    h = Harness(Bundler(1000))
    busy(h)
    outputs = [out for _ in range(LANE_RECORD_BATCHES) for out in h.process(small())]
    assert [len(bundled(out)) for out in outputs] == [LANE_RECORD_BATCHES]
    assert h.timers == set()


def test_a_batch_worth_of_tokens_fills_a_bundle() -> None:
    h = Harness(Bundler(10))
    busy(h)
    outputs = [out for _ in range(3) for out in h.process(small(tokens=4))]
    assert [sum(len(x["tokens"]) for x in bundled(out)) for out in outputs] == [12]


def test_dispatch_reads_bundles_and_lone_batches() -> None:
    one, two = batch(), batch(tokens=2)
    assert parse_bundle(codec.encode("DispatchBundle", {"batches": [one, two]})) == [one, two]
    assert parse_bundle(codec.encode("DispatchBatch", one)) == [one]  # a retry, or from before bundles


def test_an_empty_or_broken_bundle_is_dead_lettered() -> None:
    for payload, error in ((codec.encode("DispatchBundle", {"batches": []}), "empty_bundle"), (b"junk", "malformed_avro")):
        tag, letter = parse_bundle(payload, "push.dispatch.normal")
        assert tag is DLQ and codec.decode("DeadLetter", letter)["error"] == error
        assert codec.decode("DeadLetter", letter)["source_topic"] == "push.dispatch.normal"


def test_a_record_that_is_no_bundle_goes_from_send_to_the_dead_letters_and_nothing_is_sent() -> None:
    send = SendBundle(load(), timeout_s=5)
    sender = send.sender = SlowSender(0.01)  # type: ignore[assignment]
    [(kind, letter)] = asyncio.run(send.outputs(b"junk"))
    assert kind == "dlq" and codec.decode("DeadLetter", letter)["error"] == "malformed_avro"
    assert sender.finished == 0


def test_a_bundle_that_times_out_retries_each_batch() -> None:
    one, two = batch(), batch(tokens=2)
    retries = SendBundle(load()).timeout([one, two])
    assert [kind for kind, _ in retries] == ["retry", "retry"]
    decoded = [codec.decode("DispatchBatch", payload) for _, payload in retries]
    assert [(d["batch_id"], d["tokens"], d["attempt"]) for d in decoded] == [
        (one["batch_id"], one["tokens"], 1), (two["batch_id"], two["tokens"], 1)]


def longest(count: int) -> list[tuple[str, str, str, str]]:
    """Targets with the longest ids and device profiles there can be."""
    profile = profiles.encode(dict.fromkeys(profiles.FIELDS, "é" * profiles.MAX_VALUE_BYTES))
    return [(f"t{i}".ljust(keys.MAX_TOKEN_BYTES, "x"), f"u{i}".ljust(keys.MAX_PIN_BYTES, "p"),
             f"f{i}".ljust(keys.MAX_TOKEN_BYTES, "y"), profile) for i in range(count)]


def test_a_full_batch_of_the_longest_ids_and_profiles_fits_a_kafka_record() -> None:
    tag, payload = lane_batch(request(), "apns", longest(1000), 1000, "shard:0:0", 2_000)
    assert tag is LANES["normal"] and len(payload) < KAFKA_RECORD_LIMIT


def test_a_bundle_is_sent_before_its_bytes_could_pass_the_kafka_record_limit() -> None:
    h = Harness(Bundler(1000))
    body = codec.body("DispatchBatch", records.batch(request(), "apns", longest(400), 1, "test"))  # 400 of 1000 tokens
    busy(h)
    assert not h.process(SmallBatch("normal|app|apns", "normal", 400, body))
    [(tag, payload)] = h.process(SmallBatch("normal|app|apns", "normal", 400, body))  # 800 tokens, > 512 KiB
    assert tag is LANES["normal"] and LANE_RECORD_BYTES <= len(payload) < KAFKA_RECORD_LIMIT
    assert h.state("size", "normal|app|apns").value()[0] == 0, "nothing waits"


class SlowSender:
    """A Sender whose sends take `seconds`, then answer one result per batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.finished = seconds, 0

    async def dispatch(self, batch: dict) -> list[tuple[str, bytes]]:
        await asyncio.sleep(self.seconds)
        self.finished += 1
        return [("result", batch["batch_id"].encode())]


def test_a_bundle_sent_in_time_answers_its_results() -> None:
    send = SendBundle(load(), timeout_s=5)
    send.sender = SlowSender(0.01)  # type: ignore[assignment]
    one, two = batch(), batch(tokens=2)
    bundle = codec.encode("DispatchBundle", {"batches": [one, two]})
    assert asyncio.run(send.outputs(bundle)) == [("result", one["batch_id"].encode()), ("result", two["batch_id"].encode())]


def test_a_bundle_past_its_timeout_is_retried_and_its_send_left_to_finish() -> None:
    """The timeout is dispatch's own (no PyFlink timer thread per element): the send is not cancelled, so what it
    sends reaches the ledger, and the retries skip it."""
    send = SendBundle(load(), timeout_s=0.05)
    sender = send.sender = SlowSender(0.2)  # type: ignore[assignment]

    async def invoke_then_wait() -> list[tuple[str, bytes]]:
        out = await send.outputs(codec.encode("DispatchBundle", {"batches": [batch(), batch(tokens=2)]}))
        assert sender.finished == 0
        await asyncio.sleep(0.3)
        return out

    out = asyncio.run(invoke_then_wait())
    assert [kind for kind, _ in out] == ["retry", "retry"] and sender.finished == 2


class FakeSending:
    """SendBundle's part in Send: each record's send takes `seconds`, then answers a result and a retry."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds, self.sent = seconds, list[bytes]()

    def open(self, runtime_context: object) -> None:
        pass

    async def outputs(self, element: bytes) -> list[tuple[str, bytes]]:
        await asyncio.sleep(self.seconds)
        self.sent.append(element)
        return [("result", element), ("retry", b"again:" + element)]

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


def sending(fake: FakeSending, capacity: int = CAPACITY) -> tuple[Send, Harness]:
    send = Send(load(), capacity)
    send.sending = fake  # type: ignore[assignment]
    return send, Harness(send)


def settled(send: Send) -> None:
    """Wait until every send submitted has finished (they run on Send's event loop thread)."""
    concurrent.futures.wait([f for futures in send.futures.values() for f in futures.values()], timeout=5)


def test_a_sent_record_is_emitted_by_the_next_poll_and_leaves_the_state() -> None:
    send, h = sending(FakeSending())
    assert h.process(b"one", key="0") == [], "nothing is emitted while the record is sent"
    assert [value for _, value in h.state("inflight", "0").items()] == [b"one"]
    settled(send)
    assert h.advance(POLL_MS) == [b"one", (RETRY, b"again:one")]
    assert h.state("inflight", "0").is_empty() and not h.timers, "nothing in flight, no more polls"
    send.close()


def test_a_send_not_finished_is_polled_again_and_emitted_once() -> None:
    fake = FakeSending(0.2)
    send, h = sending(fake)
    h.process(b"slow", key="1")
    assert h.advance(POLL_MS) == [] and h.timers, "still sending: polled again"
    settled(send)
    assert h.advance(POLL_MS) == [b"slow", (RETRY, b"again:slow")]
    assert h.advance(10 * POLL_MS) == [] and fake.sent == [b"slow"]
    send.close()


def test_records_in_flight_at_a_checkpoint_are_sent_again_after_a_restore() -> None:
    """The state is what a checkpoint keeps of the sends in flight: opened again on it (futures gone), the key's
    first timer submits them again (the real ledger skips what went out)."""
    fake = FakeSending(0.2)
    send, h = sending(fake)
    h.process(b"a", key="2")
    h.process(b"b", key="2")
    send.close()  # the crash: the sends in memory are lost, the state and the timer are not
    h.restore()
    settled(send)  # nothing submitted yet after the restore: the timer does it
    assert h.advance(POLL_MS) == []
    settled(send)
    out = h.advance(POLL_MS)
    assert sorted(p for p in out if isinstance(p, bytes)) == [b"a", b"b"] and h.state("inflight", "2").is_empty()
    send.close()


def test_at_capacity_the_task_waits_for_a_send_to_finish() -> None:
    send, h = sending(FakeSending(0.2), capacity=1)
    began = time.monotonic()
    h.process(b"first", key="0")
    h.process(b"second", key="0")  # waits for the first send's room
    assert time.monotonic() - began >= 0.15
    settled(send)
    assert sorted(p for p in h.advance(POLL_MS) if isinstance(p, bytes)) == [b"first", b"second"]
    send.close()


def test_a_send_opened_again_in_the_same_python_closes_the_one_it_replaces() -> None:
    """A thread-mode failover opens a new instance for the subtask without closing the old one: its send loop
    (and app follower) would be left running, one more per failover."""
    first, _ = sending(FakeSending())
    second, _ = sending(FakeSending())
    assert not first.loop.thread.is_alive() and second.loop.thread.is_alive()
    second.close()
    assert not second.loop.thread.is_alive()
