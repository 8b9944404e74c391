"""Lane bundles: which batches the fan-out bundles, how the Bundler packs them, how dispatch reads them.

The Bundler runs here against small stand-ins for Flink's keyed state and timer service; the real
stack runs it in tests/test_fanout_e2e.py (single-pin requests sharing lane records).
"""
from __future__ import annotations

from flink_fakes import Context, Listed, Value
from pushpipe.config import load
from pushpipe.jobs import common, requests
from pushpipe.jobs.dispatch import ParseBundles, SendBundle
from pushpipe.jobs.fanout import BUNDLE, BUNDLE_LINGER_MS, LANE_RECORD_BYTES, LANES, Bundler, lane_batch
from pushpipe.producer import push_request
from pushpipe.schemas import codec


def request(priority: str = "normal") -> dict:
    return {**push_request("app", ["u"], "t", "b", priority=priority), "created_at": 1_000}


def batch(tokens: int = 1, priority: str = "normal") -> dict:
    return requests.batch(request(priority), "apns", [(f"t{i}", "u", "") for i in range(tokens)], 2_000, f"test:{tokens}")


def bundler(batch_size: int = 1000) -> tuple[Bundler, Context]:
    b = Bundler(batch_size)
    b.bodies, b.size = Listed(), Value()
    return b, Context("normal|app|apns")


def small(tokens: int = 1) -> tuple[str, str, int, bytes]:
    return "normal|app|apns", "normal", tokens, codec.body("DispatchBatch", batch(tokens))


def bundled(output: tuple) -> list[dict]:
    tag, payload = output
    assert tag is LANES["normal"]
    return codec.decode("DispatchBundle", payload)["batches"]


def test_a_small_batch_goes_to_the_bundler_keyed_by_lane_app_and_vendor() -> None:
    tag, (key, priority, tokens, body) = lane_batch(request("high"), "apns", [("t", "u", "")], 1000, "pin:u:0")
    assert tag is BUNDLE and key == "high|app|apns" and (priority, tokens) == ("high", 1)
    [small] = codec.decode("DispatchBundle", codec.encode_array("DispatchBundle", [body]))["batches"]
    assert small["tokens"] == ["t"] and small["priority"] == "high"


def test_a_batch_of_half_a_batch_or_more_goes_alone() -> None:
    tag, payload = lane_batch(request(), "apns", [(f"t{i}", "u", "") for i in range(500)], 1000, "shard:0:0")
    assert tag is LANES["normal"]
    [alone] = codec.decode("DispatchBundle", payload)["batches"]
    assert len(alone["tokens"]) == 500


def test_the_linger_timer_sends_what_gathered() -> None:
    b, ctx = bundler()
    outputs = [out for _ in range(3) for out in b.process_element(small(), ctx)]
    assert outputs == [] and ctx.timers.pending == {5_000 + BUNDLE_LINGER_MS}, "one timer, from the first batch"
    [out] = b.on_timer(5_000 + BUNDLE_LINGER_MS, ctx)
    assert len(bundled(out)) == 3
    assert list(b.on_timer(9_999, ctx)) == [] and b.bodies.get() == []


def test_a_full_bundle_goes_at_once_and_cancels_its_timer() -> None:
    b, ctx = bundler()
    outputs = [out for _ in range(common.LANE_RECORD_BATCHES) for out in b.process_element(small(), ctx)]
    assert [len(bundled(out)) for out in outputs] == [common.LANE_RECORD_BATCHES]
    assert ctx.timers.pending == set()


def test_a_batch_worth_of_tokens_fills_a_bundle() -> None:
    b, ctx = bundler(batch_size=10)
    outputs = [out for _ in range(3) for out in b.process_element(small(tokens=4), ctx)]
    assert [sum(len(x["tokens"]) for x in bundled(out)) for out in outputs] == [12]


def test_dispatch_reads_bundles_and_lone_batches() -> None:
    parse = ParseBundles("push.dispatch.normal")
    one, two = batch(), batch(tokens=2)
    assert list(parse.process_element(codec.encode("DispatchBundle", {"batches": [one, two]}), None)) == [[one, two]]
    assert list(parse.process_element(codec.encode("DispatchBatch", one), None)) == [[one]]  # a retry, or from before bundles


def test_an_empty_or_broken_bundle_is_dead_lettered() -> None:
    parse = ParseBundles("push.dispatch.normal")
    for payload, error in ((codec.encode("DispatchBundle", {"batches": []}), "empty_bundle"), (b"junk", "malformed_avro")):
        [(tag, letter)] = parse.process_element(payload, None)
        assert tag is common.DLQ and codec.decode("DeadLetter", letter)["error"] == error


def test_a_bundle_that_times_out_retries_each_batch() -> None:
    one, two = batch(), batch(tokens=2)
    retries = SendBundle(load()).timeout([one, two])
    assert [kind for kind, _ in retries] == ["retry", "retry"]
    decoded = [codec.decode("DispatchBatch", payload) for _, payload in retries]
    assert [(d["batch_id"], d["tokens"], d["attempt"]) for d in decoded] == [
        (one["batch_id"], one["tokens"], 1), (two["batch_id"], two["tokens"], 1)]


def test_a_bundle_is_sent_before_its_bytes_could_pass_the_kafka_record_limit() -> None:
    b, ctx = bundler()
    longest = [(f"t{i}".ljust(256, "x"), f"u{i}".ljust(128, "p"), "f".ljust(256, "y")) for i in range(400)]
    body = codec.body("DispatchBatch", requests.batch(request(), "apns", longest, 1, "test"))  # 400 of 1000 tokens
    assert not list(b.process_element(("normal|app|apns", "normal", 400, body), ctx))
    [(tag, payload)] = list(b.process_element(("normal|app|apns", "normal", 400, body), ctx))  # 800 tokens, > 512 KiB
    assert tag is LANES["normal"] and LANE_RECORD_BYTES <= len(payload) < 1_000_000
    assert not b.size.value()
