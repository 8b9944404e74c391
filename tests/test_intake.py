"""Intake and the broadcast tally, run against stand-ins for Flink's state and timers (tests/flink_fakes.py);
the real stack runs them in tests/test_fanout_e2e.py and tests/test_isolation_e2e.py."""
from __future__ import annotations

from flink_fakes import Context, Listed, Mapped, Value
from pushpipe.jobs import fanout, keys, shards
from pushpipe.producer import now_ms, push_request
from pushpipe.schemas import codec


def intake() -> fanout.Intake:
    i = fanout.Intake(3600)
    i.seen, i.scheduled, i.due, i.slicing, i.slice_at = Value(), Value(), Value(), Value(), Value()
    i.slices = Mapped()
    return i


def fire(i: fanout.Intake, ctx: Context) -> list:
    at = i.slice_at.value()
    ctx.timers.pending.discard(at)
    return list(i.on_timer(at, ctx))


def test_a_long_pin_list_goes_out_a_slice_per_timer() -> None:
    i, ctx = intake(), Context()
    request = push_request("app", [f"u{n}" for n in range(2 * fanout.PIN_SLICE + 5)], "t", "b")
    first = list(i.process_element(request, ctx))
    assert [k for k, _, _ in first] == [keys.pin_key("app", f"u{n}") for n in range(fanout.PIN_SLICE)]
    assert all(carried["pins"] == [] for _, _, carried in first), "the pin list is not copied per pin"
    assert ctx.timers.pending == {i.slice_at.value()}
    second, third = fire(i, ctx), fire(i, ctx)
    assert (len(second), len(third)) == (fanout.PIN_SLICE, 5) and third[-1][0] == keys.pin_key("app", f"u{2 * fanout.PIN_SLICE + 4}")
    assert i.slicing.value() is None and i.slice_at.value() is None and not ctx.timers.pending and not i.slices.items


def test_a_slice_timer_never_fires_a_schedule_early() -> None:
    i, ctx = intake(), Context()
    later = push_request("app", ["u"], "t", "b", deliver_at=now_ms() + 60_000)
    assert not list(i.process_element(later, ctx))
    i.slices.put(0, (push_request("app", [], "t", "b"), ["v"]))
    i.slicing.update((0, 1))
    i.slice_at.update(ctx.timers.now + 1)
    assert [k for k, _, _ in fire(i, ctx)] == [keys.pin_key("app", "v")]
    assert i.scheduled.value() is not None, "the scheduled request still waits for its time"


def test_a_broadcast_that_matches_no_device_anywhere_says_so_once_every_shard_reported() -> None:
    tally = fanout.BroadcastTally()
    tally.tally = Value()
    request = push_request("app", [], "t", "b", target="broadcast")
    out = [o for _ in range(shards.SHARDS) for o in tally.process_element(("k", request, 0), Context())]
    [(tag, payload)] = out
    result = codec.decode("DispatchResult", payload)
    assert tag is fanout.RESULTS and [o["reason"] for o in result["outcomes"]] == ["no_devices_matched"]
    assert not [o for n in range(shards.SHARDS) for o in tally.process_element(("k", request, int(n == 3)), Context())]


def batcher(size: int) -> fanout.Batcher:
    b = fanout.Batcher(size)
    b.parts, b.head, b.emitted = Listed(), Value(), Value()
    return b


def batches_of(out: list) -> list[dict]:
    """The DispatchBatches of Batcher outputs: full ones on their lane, a small one on its way to the Bundler."""
    bodies = [payload[3] if tag is fanout.BUNDLE else payload for tag, payload in out]
    return [codec.decode("DispatchBundle", b)["batches"][0] if b[:2] == codec.MAGIC else
            codec.decode("DispatchBundle", codec.encode_array("DispatchBundle", [b]))["batches"][0] for b in bodies]


def test_the_batcher_gathers_pins_into_full_batches_numbered_in_order() -> None:
    b, ctx = batcher(3), Context("k")
    request = push_request("app", [f"u{n}" for n in range(7)], "t", "b")
    out = [o for n in range(7) for o in b.process_element(("k", "apns", request, [(f"t{n}", f"u{n}", "")]), ctx)]
    out += list(b.on_timer(0, ctx))
    found = batches_of(out)
    assert [x["tokens"] for x in found] == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    assert b.head.value() is None and not b.parts.get()
    again = batcher(3)
    replayed = [o for n in range(7) for o in again.process_element(("k", "apns", request, [(f"t{n}", f"u{n}", "")]), Context("k"))]
    assert [x["batch_id"] for x in batches_of(replayed)] == [x["batch_id"] for x in found[:2]], "a replay gives the same ids"
    assert len({x["batch_id"] for x in found}) == 3
