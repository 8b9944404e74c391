"""Each keyed stage of the fan-out, run by tests/flink_fakes.Harness: in-memory keyed state, a fake clock and
timers, no services. The real stack runs the same stages in tests/test_fanout_e2e.py and test_isolation_e2e.py."""
from __future__ import annotations

import pytest

from flink_fakes import Harness, Mapped
from pushpipe.config import load
from pushpipe.jobs.deadletters import DLQ, TOMBSTONE_MARK
from pushpipe.jobs.fanout import intake
from pushpipe.jobs.fanout.batcher import Batcher
from pushpipe.jobs.fanout.buckets import DeviceBuckets, bucket_of
from pushpipe.jobs.fanout.intake import Intake
from pushpipe.jobs.fanout.messages import (
    FEEDBACK,
    GATHER,
    LANES,
    REPORT,
    RESULTS,
    TO_BUNDLER,
    TO_PIN,
    TO_SHARD,
    Gather,
    ShardKind,
    ShardReport,
    ToPin,
    ToShard,
)
from pushpipe.jobs.fanout.parse import ParseDeviceEvents, routed
from pushpipe.jobs.fanout.pin_directory import PinDirectory
from pushpipe.jobs.fanout.shard_directory import ShardDirectory
from pushpipe.jobs.fanout.shards import summary_after
from pushpipe.jobs.fanout.tally import BroadcastTally
from pushpipe.producer import device_event, preference_event, push_request
from pushpipe.schemas import codec, keys, profiles

NOON = 1_795_348_800_000  # 2026-11-22 12:00 UTC
IPHONE = {"brand": "Apple", "model": "iPhone15,3", "os_version": "17.4.1", "app_version": "5.0.1"}


def results(out: list) -> list[dict]:
    return [codec.decode("DispatchResult", payload) for tag, payload in out if tag is RESULTS]


def reasons(out: list) -> list[str]:
    return [o["reason"] for result in results(out) for o in result["outcomes"]]


def batches(out: list) -> list[dict]:
    """The DispatchBatches of stage outputs: on a lane, or small on their way to the Bundler."""
    found = []
    for tag, payload in out:
        if tag is TO_BUNDLER:
            found.append(codec.decode("DispatchBundle", codec.encode_array("DispatchBundle", [payload.body]))["batches"][0])
        elif tag in LANES.values():
            found += codec.decode("DispatchBundle", payload)["batches"]
    return found


def take(h: Harness, request: dict) -> list:
    """Intake's input is the request, keyed by its message."""
    return h.process(request, key=keys.message_key(request["app_id"], request["msg_id"]))


def made(request: dict, at: int) -> dict:
    return {**request, "created_at": at}


# ---- Intake -------------------------------------------------------------------------------------------

def test_a_long_pin_list_goes_out_a_slice_per_timer() -> None:
    h = Harness(Intake(3600))
    request = push_request("app", [f"u{n}" for n in range(2 * intake.PIN_SLICE + 5)], "t", "b")
    first = take(h, request)
    assert [m.key for m in first] == [keys.pin_key("app", f"u{n}") for n in range(intake.PIN_SLICE)]
    assert all(m.kind == "request" and m.record["pins"] == [] for m in first), "the pin list is not copied per pin"
    second = h.advance(intake.SLICE_INTERVAL_MS)
    third = h.advance(intake.SLICE_INTERVAL_MS)
    assert (len(second), len(third)) == (intake.PIN_SLICE, 5) and third[-1].key == keys.pin_key("app", f"u{2 * intake.PIN_SLICE + 4}")
    assert not h.timers and not h.advance(10_000)


def test_a_slice_slow_to_hand_on_doubles_the_wait_and_quick_ones_shorten_it() -> None:
    h = Harness(Intake(3600))
    take(h, push_request("app", [f"u{n}" for n in range(5 * intake.PIN_SLICE)], "t", "b"))
    handing_on = iter(range(1_000_000))
    h.fn.clock = lambda: h.now + (intake.SLOW_SLICE_MS + 1) * (next(handing_on) % 2)  # each slice blocks a while
    assert len(h.advance(intake.SLICE_INTERVAL_MS)) == intake.PIN_SLICE
    assert not h.advance(2 * intake.SLICE_INTERVAL_MS - 1), "a slow slice doubles the wait"
    assert len(h.advance(1)) == intake.PIN_SLICE
    h.fn.clock = lambda: h.now  # the pin directory keeps up again
    assert not h.advance(4 * intake.SLICE_INTERVAL_MS - 1) and len(h.advance(1)) == intake.PIN_SLICE
    assert not h.advance(3 * intake.SLICE_INTERVAL_MS - 1), "a quick slice shortens it by a quarter"
    assert len(h.advance(1)) == intake.PIN_SLICE and not h.timers


def test_the_wait_between_slices_stays_between_its_bounds() -> None:
    assert intake.next_wait_ms(intake.SLICE_INTERVAL_MS, 0) == intake.SLICE_INTERVAL_MS
    assert intake.next_wait_ms(intake.MAX_SLICE_INTERVAL_MS, intake.SLOW_SLICE_MS + 1) == intake.MAX_SLICE_INTERVAL_MS
    assert intake.next_wait_ms(100, intake.SLOW_SLICE_MS) == 75, "a slice as slow as the bound is quick"


def test_a_duplicate_is_a_result_and_a_scheduled_request_waits_for_its_time() -> None:
    h = Harness(Intake(3600))
    later = made(push_request("app", ["u"], "t", "b", deliver_at=h.now + 60_000), h.now)
    taken_at = h.now
    assert not take(h, later)
    assert reasons(take(h, later)) == ["duplicate"]
    assert not h.advance(59_999), "not before its time"
    [routed] = h.advance(1)
    assert routed == ToPin(keys.pin_key("app", "u"), "request", {**later, "pins": [], "taken_at": taken_at})


def test_a_request_past_its_ttl_expires_and_a_broadcast_goes_to_every_shard() -> None:
    h = Harness(Intake(3600))
    old = made(push_request("app", ["u"], "t", "b", ttl_s=3600), h.now - 3_600_001)
    assert reasons(take(h, old)) == ["past its TTL before it could be sent"]
    everyone = take(h, made(push_request("app", [], "t", "b", target="broadcast"), h.now))
    assert [tag for tag, _ in everyone] == [TO_SHARD] * keys.SHARDS
    assert {m.key for _, m in everyone} == set(keys.all_shard_keys("app")) and {m.kind for _, m in everyone} == {"everyone"}


def test_a_slice_timer_never_fires_a_schedule_early() -> None:
    h = Harness(Intake(3600))
    later = made(push_request("app", ["u"], "t", "b", deliver_at=h.now + 60_000), h.now)
    take(h, later)
    take(h, made(push_request("app", [f"v{n}" for n in range(intake.PIN_SLICE + 1)], "t", "b"), h.now))
    slice_out = h.advance(intake.SLICE_INTERVAL_MS)
    assert [m.key for m in slice_out] == [keys.pin_key("app", f"v{intake.PIN_SLICE}")]
    assert h.state("scheduled", keys.message_key("app", later["msg_id"])).value() is not None, "the scheduled request still waits"


def test_only_a_pin_push_due_now_goes_straight_to_its_pin() -> None:
    now = push_request("app", ["u"], "t", "b")
    tag, message = routed(now)
    assert tag is TO_PIN and message.key == keys.pin_key("app", "u") and message.kind == "push"
    assert message.record["pins"] == [] and message.record["taken_at"] > 0 and message.record["msg_id"] == now["msg_id"]
    through_intake = [push_request("app", ["u"], "t", "b", deliver_at=now["created_at"] + 60_000),
                      push_request("app", ["u"], "t", "b", recurrence="0 9 * * *"),
                      push_request("app", ["u", "v"], "t", "b"), push_request("app", [], "t", "b", target="broadcast")]
    assert [routed(request) for request in through_intake] == through_intake


# ---- Pin directory ------------------------------------------------------------------------------------

@pytest.fixture
def pins(tmp_path, monkeypatch) -> Harness:
    monkeypatch.setenv("PUSHPIPE_QUIET_HOURS", "22:00-08:00")
    return Harness(PinDirectory(load(home=tmp_path)), now=NOON)


def test_a_pin_push_becomes_a_batch_per_vendor_and_an_unknown_pin_a_reason(pins: Harness) -> None:
    key = keys.pin_key("a", "u")
    for token, vendor in (("ios1", "apns"), ("hms1", "hms")):
        assert not pins.process(ToPin(key, "device", device_event("a", "u", token, vendor=vendor)))
    out = pins.process(ToPin(key, "request", made(push_request("a", ["u"], "t", "b", priority="high"), NOON)))
    assert sorted((b["vendor"], tuple(b["tokens"]), b["pins"][0]) for b in batches(out)) == [("apns", ("ios1",), "u"), ("hms", ("hms1",), "u")]
    assert reasons(pins.process(ToPin(keys.pin_key("a", "nobody"), "request", push_request("a", ["nobody"], "t", "b")))) == ["no_devices"]
    expanded = {v: pins.metrics.count_of("pushpipe_tokens_expanded", stage="pin-directory", vendor=v) for v in ("apns", "hms")}
    assert expanded == {"apns": 1, "hms": 1}


def test_a_pin_push_is_sent_once_whichever_way_it_came(pins: Harness) -> None:
    key = keys.pin_key("a", "u")
    pins.process(ToPin(key, "device", device_event("a", "u", "ios1")))
    now, scheduled = made(push_request("a", ["u"], "t", "b"), NOON), made(push_request("a", ["u"], "t", "b"), NOON)
    assert [b["tokens"] for b in batches(pins.process(ToPin(key, "push", now)))] == [["ios1"]]
    assert [b["tokens"] for b in batches(pins.process(ToPin(key, "request", scheduled)))] == [["ios1"]], "from Intake"
    for kind, again in (("push", now), ("request", now), ("push", scheduled)):
        out = pins.process(ToPin(key, kind, again))
        assert not batches(out) and reasons(out) == ["duplicate"] and results(out)[0]["outcomes"][0]["pin"] == "u"
    stale = made(push_request("a", ["u"], "t", "b", ttl_s=60), NOON - 60_001)
    assert reasons(pins.process(ToPin(key, "push", stale))) == ["past its TTL before it could be sent"]
    assert reasons(pins.process(ToPin(key, "push", stale))) == ["duplicate"], "a resend of it too, as Intake says"
    listed = made(push_request("a", ["u", "v"], "t", "b", msg_id=now["msg_id"]), NOON)
    shared = [g.items for _, g in pins.process(ToPin(key, "request", listed))]
    assert shared == [[("ios1", "u", "", "")]], "a pin list's share is Intake's to deduplicate"


def test_an_unknown_pin_leaves_no_state_behind(pins: Harness) -> None:
    key = keys.pin_key("a", "nobody")
    for n in range(3):
        pins.process(ToPin(key, "request", push_request("a", ["nobody", f"other{n}"], "t", "b", msg_id=f"m{n}")))
    assert pins.state("pin", key).value() is None, "a pin list to unregistered users writes nothing per user"


def test_a_pin_push_carries_each_device_profile_with_its_token(pins: Harness) -> None:
    key = keys.pin_key("a", "u")
    pins.process(ToPin(key, "device", device_event("a", "u", "ios1", **IPHONE)))
    pins.process(ToPin(key, "device", device_event("a", "u", "ios2")))
    [batch] = batches(pins.process(ToPin(key, "request", made(push_request("a", ["u"], "t", "b"), NOON))))
    assert dict(zip(batch["tokens"], batch["profiles"], strict=True)) == {"ios1": profiles.encode(IPHONE), "ios2": ""}


def test_quiet_hours_hold_a_push_until_they_end_on_the_fake_clock(pins: Harness) -> None:
    key = keys.pin_key("a", "u")
    pins.process(ToPin(key, "device", device_event("a", "u", "ios1")))
    pins.now = NOON + 11 * 3_600_000  # 23:00 UTC: quiet
    held = made(push_request("a", ["u"], "t", "b", category="news", ttl_s=86_400), pins.now)
    assert not pins.process(ToPin(key, "request", held))
    assert not pins.advance(8 * 3_600_000), "still quiet at 07:00"
    [batch] = batches(pins.advance(3_600_000))
    assert batch["tokens"] == ["ios1"] and batch["due_at"] == NOON + 20 * 3_600_000, "due when quiet hours ended, at 08:00"


def test_a_pin_list_share_and_a_bad_preference_go_their_ways(pins: Harness) -> None:
    key = keys.pin_key("a", "u")
    pins.process(ToPin(key, "device", device_event("a", "u", "ios1")))
    [(tag, gathered)] = pins.process(ToPin(key, "request", push_request("a", ["u", "v"], "t", "b", priority="high")))
    assert tag is GATHER and gathered.vendor == "apns" and gathered.items == [("ios1", "u", "", "")]
    [(tag, _)] = pins.process(ToPin(key, "preference", preference_event("a", "u", "set_timezone", timezone="Mars/Base")))
    assert tag is DLQ


# ---- Shard directory ----------------------------------------------------------------------------------

@pytest.fixture
def shards(tmp_path) -> Harness:
    return Harness(ShardDirectory(load(home=tmp_path)), now=NOON)


def in_shard(kind: ShardKind, record: dict, token: str = "") -> ToShard:
    return ToShard(keys.shard_key(record["app_id"], token or record.get("token") or record["tokens"][0]), kind, record)


def test_an_urgent_broadcast_is_expanded_by_the_shard_with_its_users_opt_outs(shards: Harness) -> None:
    shard = keys.shard_key("a", "ios1")
    for pin, token in (("u", "ios1"), ("v", "ios1x")):
        shards.process(ToShard(shard, "device", device_event("a", pin, token)))
    shards.process(ToShard(shard, "preference", preference_event("a", "v", "opt_out", channel="apns")))
    urgent = push_request("a", [], "t", "b", target="broadcast", category="transactional", priority="high")
    out = shards.process(ToShard(shard, "everyone", urgent))
    [report] = [m for tag, m in out if tag is REPORT]
    assert report == ShardReport(keys.message_key("a", urgent["msg_id"]), urgent, 2)
    assert [b["tokens"] for b in batches(out)] == [["ios1"]] and reasons(out) == ["opted_out:channel:apns"]
    assert shards.metrics.count_of("pushpipe_tokens_expanded", stage="shard-directory", vendor="apns") == 1


def test_a_broadcast_expanded_by_the_shard_carries_each_device_profile(shards: Harness) -> None:
    shard = keys.shard_key("a", "ios1")
    shards.process(ToShard(shard, "device", device_event("a", "u", "ios1", **IPHONE)))
    stored = DeviceBuckets(shards.state("device_buckets", shard))
    stored_before_model_and_os = {k: v for k, v in (stored.get("ios1") or {}).items() if k not in ("model", "os_version")}
    stored.put("ios1x", {**stored_before_model_and_os, "pin": "v"})
    urgent = push_request("a", [], "t", "b", target="broadcast", category="transactional", priority="high")
    [batch] = batches(shards.process(ToShard(shard, "everyone", urgent)))
    assert dict(zip(batch["tokens"], batch["profiles"], strict=True)) == {
        "ios1": profiles.encode(IPHONE), "ios1x": profiles.encode({"brand": "Apple", "app_version": "5.0.1"})}


def test_a_shard_keeps_its_devices_in_buckets_of_many(shards: Harness) -> None:
    """A broadcast reads a bucket per state entry, not a device: 3,000 devices of one shard in fewer entries, spread over the buckets."""
    tokens = [t for t in (f"tok{n}" for n in range(100_000)) if keys.token_shard(t) == 0][:3000]
    shard = keys.shard_key("a", tokens[0])
    for token in tokens:
        shards.process(ToShard(shard, "device", device_event("a", f"u-{token}", token)))
    shards.process(ToShard(shard, "device", device_event("a", f"u-{tokens[0]}", tokens[0], kind="unbind")))
    entries = shards.state("device_buckets", shard).items()
    assert len(entries) == len({bucket_of(t) for t in tokens[1:]}) > 800 and sum(len(bucket) for _, bucket in entries) == 2999
    urgent = push_request("a", [], "t", "b", target="broadcast", category="transactional", priority="high")
    sent = [t for b in batches(shards.process(ToShard(shard, "everyone", urgent))) for t in b["tokens"]]
    assert sorted(sent) == sorted(tokens[1:])


class CountedReads(Mapped):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: object) -> object:
        self.reads += 1
        return super().get(key)


def test_a_device_event_reads_its_bucket_once(shards: Harness) -> None:
    """A bind, a report and an unbind each read the token's bucket once, then write it (a 1,000,000-device app has
    ~30 devices a bucket: reading it twice was a second unpickle of them per event)."""
    shard = keys.shard_key("a", "tok1")
    buckets = shards.states[("device_buckets", shard)] = CountedReads()
    shards.process(ToShard(shard, "device", device_event("a", "u", "tok1")))
    shards.process(ToShard(shard, "device", device_event("a", "u", "tok1", kind="report")))
    assert buckets.reads == 2 and DeviceBuckets(buckets).get("tok1") is not None
    shards.process(ToShard(shard, "device", device_event("a", "u", "tok1", kind="unbind")))
    assert buckets.reads == 4 and buckets.data == {}, "read once more by the check above, once by the unbind; the empty bucket removed"


def test_a_shard_written_with_an_entry_per_device_moves_them_into_buckets(shards: Harness) -> None:
    """State from before buckets (an entry per token in "devices") is adopted the first time its shard is touched."""
    shard = keys.shard_key("a", "old1")
    summary = summary_after(None, device_event("a", "u", "old1"))
    written_before_buckets = shards.states[("devices", shard)] = Mapped()
    for pin, token in (("u", "old1"), ("v", "old2")):
        written_before_buckets.put(token, {**summary, "pin": pin})
    urgent = push_request("a", [], "t", "b", target="broadcast", category="transactional", priority="high")
    [batch] = batches(shards.process(ToShard(shard, "everyone", urgent)))
    assert sorted(batch["tokens"]) == ["old1", "old2"]
    assert shards.state("devices", shard).is_empty(), "moved, not copied"
    assert DeviceBuckets(shards.state("device_buckets", shard)).get("old2") == {**summary, "pin": "v"}


def test_a_marketing_broadcast_goes_to_each_user_once(shards: Harness) -> None:
    shard = keys.shard_key("a", "t1")
    for pin, token in (("u", "t1"), ("u", "t1b"), ("", "t1c")):
        shards.process(ToShard(shard, "device", device_event("a", pin, token)))
    out = shards.process(ToShard(shard, "everyone", push_request("a", [], "t", "b", target="broadcast", category="marketing")))
    users = sorted(m.key for tag, m in out if tag is TO_PIN)
    assert users == sorted([keys.pin_key("a", "u"), keys.user_key("a", "", "t1c")]), "one per user, an anonymous device its own"


def test_a_token_push_a_moved_token_and_a_tombstone(shards: Harness) -> None:
    bound = device_event("a", "u", "tok")
    shards.process(in_shard("device", bound))
    [(tag, gathered)] = shards.process(in_shard("token", push_request("a", [], "t", "b", target="tokens", tokens=["tok"])))
    assert tag is GATHER and gathered.items == [("tok", "u", "", "")]
    [(tag, unbind)] = shards.process(in_shard("device", device_event("a", "w", "tok")))
    assert tag is FEEDBACK and codec.decode("DeviceEvent", unbind)["pin"] == "u", "its old pin stops targeting it"
    [(tag, gone)] = shards.process(in_shard("forget", {"app_id": "a", "token": "tok"}))
    assert tag is FEEDBACK and codec.decode("DeviceEvent", gone)["kind"] == "deregister"
    unknown = shards.process(in_shard("token", push_request("a", [], "t", "b", target="tokens", tokens=["tok"])))
    assert reasons(unknown) == ["unknown_token"]


# ---- Parsers, tally, Batcher --------------------------------------------------------------------------

def test_a_device_tombstone_is_forgotten_by_its_shard_and_a_bad_key_is_a_dead_letter() -> None:
    parse = ParseDeviceEvents("device.events", ("device.events",))
    Harness(parse)  # opened (its metrics group is the fake context's: none)
    [(tag, forget)] = list(parse.process_element(TOMBSTONE_MARK + b"device.events\0a|tok", None))
    assert tag is TO_SHARD and forget == ToShard(keys.shard_key("a", "tok"), "forget", {"app_id": "a", "token": "tok"})
    [(tag, letter)] = list(parse.process_element(TOMBSTONE_MARK + b"device.events\0a|", None))
    assert tag is DLQ and "not app|token" in codec.decode("DeadLetter", letter)["reason"]


def test_a_broadcast_that_matches_no_device_anywhere_says_so_once_every_shard_reported() -> None:
    h = Harness(BroadcastTally())
    request = push_request("app", [], "t", "b", target="broadcast")
    out = [o for _ in range(keys.SHARDS) for o in h.process(ShardReport("k", request, 0))]
    assert reasons(out) == ["no_devices_matched"]
    assert not [o for n in range(keys.SHARDS) for o in h.process(ShardReport("k2", request, int(n == 3)))]


def test_the_batcher_gathers_pins_into_full_batches_numbered_in_order() -> None:
    h = Harness(Batcher(3))
    request = push_request("app", [f"u{n}" for n in range(7)], "t", "b")
    out = [o for n in range(7) for o in h.process(Gather("k", "apns", request, [(f"t{n}", f"u{n}", "", "")]))]
    out += h.advance(100)
    found = batches(out)
    assert [x["tokens"] for x in found] == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    again = Harness(Batcher(3))
    replayed = [o for n in range(7) for o in again.process(Gather("k", "apns", request, [(f"t{n}", f"u{n}", "", "")]))]
    assert [x["batch_id"] for x in batches(replayed)] == [x["batch_id"] for x in found[:2]], "a replay gives the same ids"
    assert len({x["batch_id"] for x in found}) == 3


def test_the_batcher_carries_profiles_and_takes_a_target_from_before_them() -> None:
    h = Harness(Batcher(2))
    request = push_request("app", ["u0", "u1"], "t", "b")
    out = h.process(Gather("k", "apns", request, [("t0", "u0", "")]))  # three fields: checkpointed before profiles
    out += h.process(Gather("k", "apns", request, [("t1", "u1", "", profiles.encode(IPHONE))]))
    [batch] = batches(out)
    assert batch["tokens"] == ["t0", "t1"] and batch["profiles"] == ["", profiles.encode(IPHONE)]


def test_a_receipt_that_names_only_the_token_reaches_its_pin_through_the_shard(shards: Harness) -> None:
    shards.process(in_shard("device", device_event("a", "u", "tok")))
    for kind in ("invalid_token", "switch_off"):
        [(tag, told)] = shards.process(in_shard("device", device_event("a", "", "tok", kind=kind, reason="receipt xiaomi 16")))
        news = codec.decode("DeviceEvent", told)
        assert tag is FEEDBACK and (news["pin"], news["kind"], news["token"]) == ("u", kind, "tok")
    assert not shards.process(in_shard("device", device_event("a", "", "unknown", kind="invalid_token")))
