"""Pure fan-out logic: the device directory and request expansion."""
import re

import pytest

from pushpipe.jobs.fanout import devices, records, shards, validate
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.policy.decide import eligible_devices
from pushpipe.jobs.policy.preferences import apply_preference
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import codec, keys, results


def vendors(state: devices.Devices, environment: str) -> dict[str, str]:
    return {token: device["vendor"] for token, device in eligible_devices(state, environment).items()}


def test_bind_report_switch_and_unbind() -> None:
    state = devices.apply_event({}, device_event("a", "u1", "tok1"))
    state = devices.apply_event(state, device_event("a", "u1", "tok2", vendor="fcm"))
    assert vendors(state, "production") == {"tok1": "apns", "tok2": "fcm"}
    state = devices.apply_event(state, device_event("a", "u1", "tok1", kind="switch_off"))
    assert vendors(state, "production") == {"tok2": "fcm"}
    state = devices.apply_event(state, device_event("a", "u1", "tok1", kind="switch_on", brand="Apple"))
    assert vendors(state, "production")["tok1"] == "apns"
    assert [kind for _, kind, _ in state["tok1"]["switch_history"]] == ["switch_off", "switch_on"]
    state = devices.apply_event(state, device_event("a", "u1", "tok2", kind="invalid_token"))
    state = devices.apply_event(state, device_event("a", "u1", "tok1", kind="unbind"))
    assert state == {}


def test_token_refresh_replaces_the_old_token() -> None:
    state = devices.apply_event({}, device_event("a", "u1", "old"))
    state = devices.apply_event(state, device_event("a", "u1", "new", kind="report", previous_token="old"))
    assert list(state) == ["new"]


def test_environment_is_respected() -> None:
    state = devices.apply_event({}, device_event("a", "u1", "prod"))
    state = devices.apply_event(state, device_event("a", "u1", "dev", environment="test"))
    assert vendors(state, "test") == {"dev": "apns"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"msg_id": " "}, "msg_id is empty"),
        ({"app_id": ""}, "app_id '' must be 1-64 of"),
        ({"app_id": "a|b"}, "app_id 'a|b' must be"),
        ({"app_id": "a:b"}, "app_id 'a:b' must be"),
        ({"app_id": "x" * 65}, "must be 1-64"),
        ({"msg_id": "m|1"}, "must not contain '|'"),
        ({"msg_id": "m\x00"}, "U\\+0000"),
        ({"msg_id": "m" * 129}, "129 bytes, at most 128"),
        ({"pins": ["ok", "bad\npin"]}, "a pin 'bad\\\\npin' contains the control or format character U\\+000A"),
        ({"pins": ["\u202eevil"]}, "U\\+202E"),
        ({"pins": ["p" * 129]}, "a pin is 129 bytes"),
        ({"pins": [f"u{i}" for i in range(100_001)]}, "100001 pins, at most 100000"),
        ({"target": "tokens", "tokens": ["t t"]}, "must not contain whitespace"),
        ({"target": "tokens", "tokens": ["t" * 257]}, "a token is 257 bytes"),
        ({"deliver_at": 1_000_000_000_000 + 3_600_000 + 1, "created_at": 1_000_000_000_000, "ttl_s": 3600},
         "beyond the request's TTL of 3600 s"),
        ({"pins": []}, "needs at least one pin"),
        ({"target": "pin", "pins": ["a", "b"]}, "exactly one pin"),
        ({"target": "segment", "segment": {"color": "red"}}, "needs filters among"),
        ({"target": "tokens", "tokens": []}, "needs at least one token"),
        ({"recurrence": "61 * * * *"}, "recurrence"),
        ({"notification": {"title": "", "body": "", "data": {}, "template_id": None}}, "no title, body, data or template"),
    ],
)
def test_invalid_requests_have_reasons(change: dict, reason: str) -> None:
    request = {**push_request("a", ["u1"], "t", "b"), **change}
    with pytest.raises(validate.InvalidRequest, match=reason):
        validate.validate(request)


def test_batches_carry_the_request_and_are_chunked() -> None:
    request = push_request("a", ["u1"], "t", "b", ttl_s=60)
    parts = list(records.chunks([(f"t{i}", f"u{i}", "um" if i == 1 else "", "") for i in range(7)], 3))
    assert [len(p) for p in parts] == [3, 3, 1]
    batch = records.batch(request, "apns", parts[0], now_ms=1, position="pins:0")
    assert batch["msg_id"] == request["msg_id"] and batch["tokens"] == ["t0", "t1", "t2"]
    assert batch["pins"] == ["u0", "u1", "u2"] and batch["fallback_tokens"] == {"t1": "um"}
    assert batch["expires_at"] == request["created_at"] + 60_000


def test_what_is_not_sent_becomes_a_result_with_reasons() -> None:
    [result] = records.unsent_results(push_request("a", ["u1"], "t", "b"), "pin:u1", [Unsent("", "suppressed", "no_devices")], "u1", now_ms=1)
    assert result["outcomes"][0]["outcome"] == "suppressed" and result["outcomes"][0]["code"] == "no_devices"
    assert result["batch_id"].endswith(":pin:u1") and result["vendor"] == results.NO_VENDOR


def test_many_outcomes_are_split_into_results_that_fit_a_kafka_record() -> None:
    request = push_request("a", ["u1"], "t", "b")
    outcomes = [Unsent(f"t{i}".ljust(250, "x"), "suppressed", "opted_out:marketing", f"u{i}".ljust(128, "p")) for i in range(2500)]
    found = list(records.unsent_results(request, "shard:3:unsent", outcomes, "", now_ms=1))
    assert [len(r["outcomes"]) for r in found] == [1000, 1000, 500]
    assert len({r["batch_id"] for r in found}) == 3
    assert max(len(codec.encode("DispatchResult", r)) for r in found) < 1_000_000 // 2
    assert found[2]["outcomes"][-1]["pin"].startswith("u2499")


def test_batch_ids_are_derived_from_app_message_vendor_text_and_position() -> None:
    request = push_request("a", ["u1"], "t", "b")
    one = records.batch(request, "apns", [("t1", "u1", "", "")], 1, "shard:3:0")
    assert records.batch(request, "apns", [("t1", "u1", "", "")], 2, "shard:3:0")["batch_id"] == one["batch_id"]
    others = [records.batch(request, "apns", [("t1", "u1", "", "")], 1, "shard:3:1"),
              records.batch({**request, "app_id": "b"}, "apns", [("t1", "u1", "", "")], 1, "shard:3:0"),
              records.batch(request, "fcm", [("t1", "u1", "", "")], 1, "shard:3:0"),
              records.batch({**request, "notification": {**request["notification"], "title": "other"}}, "apns",
                             [("t1", "u1", "", "")], 1, "shard:3:0")]
    assert len({one["batch_id"], *(o["batch_id"] for o in others)}) == 5


def test_occurrences_of_a_recurring_request_have_their_own_id_and_clock() -> None:
    request = push_request("a", ["u1"], "t", "b", recurrence="0 9 * * *")
    fired = records.occurrence(request, 5_000)
    assert fired["msg_id"] == f"{request['msg_id']}@5000" and fired["created_at"] == 5_000 and not fired["recurrence"]


def test_shards_keep_only_the_preferences_that_can_block_a_broadcast() -> None:
    prefs = apply_preference(None, {"kind": "opt_out", "category": "marketing", "ts": 1})
    assert shards.blocking_preferences(prefs) == {"opted_out_categories": ["marketing"]}
    back = apply_preference(prefs, {"kind": "opt_in", "category": "marketing", "ts": 2})
    assert shards.blocking_preferences(back) is None
    quiet = apply_preference(None, {"kind": "set_quiet_hours", "quiet_start": "22:00", "quiet_end": "07:00", "ts": 1})
    assert shards.blocking_preferences(quiet) is None


def test_a_broadcast_shard_counts_the_devices_it_skips_by_reason() -> None:
    def device(**change: object) -> dict:
        return {"pin": "u", "vendor": "apns", "platform": "ios", "environment": "production", "brand": "", "app_version": "1.0",
                "locale": "", "fallback_token": None, "tags": [], "enabled": True, **change}

    devices_ = [("on", device()), ("off", device(enabled=False)), ("test", device(environment="test")),
                ("android", device(vendor="fcm", enabled=False))]
    chosen, skipped = shards.select(devices_, push_request("a", [], "t", "b", target="broadcast"))
    assert [t for t, _ in chosen] == ["on"] and skipped == {"switched_off": 2, "test_device": 1}
    chosen, skipped = shards.select(devices_, push_request("a", [], "t", "b", target="segment", segment={"vendor": "apns"}))
    assert [t for t, _ in chosen] == ["on"] and skipped == {"switched_off": 1, "test_device": 1}


def test_keys_of_two_apps_never_meet() -> None:
    with pytest.raises(keys.InvalidId):
        keys.check_app_id("a|b")
    assert keys.pin_of(keys.pin_key("a", "b|c")) == "b|c"
    assert keys.delivery_doc_id("a", "m", "t") == "a:m|t"
    long_id = keys.delivery_doc_id("a" * 64, "m" * 128, "t" * 400)
    assert len(long_id.encode()) <= keys.ES_ID_BYTES and long_id.startswith("a" * 64 + ":" + "m" * 128 + "|sha256:")


def test_device_events_with_bad_ids_have_reasons() -> None:
    assert devices.event_problem(device_event("a", "u", "tok")) is None
    assert "app_id" in devices.event_problem(device_event("a|b", "u", "tok"))
    assert "token is empty" in devices.event_problem(device_event("a", "u", ""))
    assert "U+0007" in devices.event_problem(device_event("a", "u\x07", "tok"))
    assert devices.event_problem(device_event("a", "", "tok")) is None, "an anonymous install"


@pytest.mark.parametrize("pin, reason", [
    ("caf\u00e9 \u4e2d", None),
    ("no\u00a0break", None),  # a separator, not printable to str.isprintable, but allowed in a pin
    ("zero\u200bwidth", "U+200B"),  # a format character
    ("line\u2028sep", None),
    ("bell\x07", "U+0007"),
])
def test_pins_refuse_exactly_the_control_and_format_characters(pin: str, reason: str | None) -> None:
    if reason is None:
        keys.check_pin(pin)
    else:
        with pytest.raises(keys.InvalidId, match=re.escape(reason)):
            keys.check_pin(pin)


@pytest.mark.parametrize("token", ["a b", "a\u00a0b", "a\u3000b", "a\tb"])
def test_tokens_refuse_any_whitespace(token: str) -> None:
    with pytest.raises(keys.InvalidId, match="whitespace|U\\+0009"):
        keys.check_token(token)


def test_a_pin_lists_unknown_pins_are_one_outcome() -> None:
    outcomes = [records.Unsent("", "suppressed", "no_devices") for _ in range(5)]  # pins never registered
    outcomes += [records.Unsent("", "suppressed", "no_devices", pin="switched-off"),
                 records.Unsent("", "suppressed", "cap:marketing", pin="capped"), records.Unsent("t1", "rejected", "oversize", pin="v")]
    kept = records.without_unknown_pins(outcomes)
    assert kept[:3] == outcomes[5:] and kept[3] == records.Unsent("", "suppressed", "no_devices", number=5)
    assert records.without_unknown_pins(outcomes[5:]) == outcomes[5:]


def test_each_preference_setting_has_its_own_compaction_key() -> None:
    event = lambda kind, **f: {"app_id": "a", "pin": "u", "kind": kind, **f}  # noqa: E731
    found = {keys.preference_key(event("opt_out", category="marketing")), keys.preference_key(event("opt_out", channel="hms")),
             keys.preference_key(event("unsubscribe")), keys.preference_key(event("set_timezone", timezone="Asia/Shanghai")),
             keys.preference_key(event("set_quiet_hours"))}
    assert found == {"a|u|category:marketing", "a|u|channel:hms", "a|u|subscription", "a|u|timezone", "a|u|quiet_hours"}
    assert keys.preference_key(event("opt_in", category="marketing")) == "a|u|category:marketing"


def test_a_pin_or_token_listed_twice_is_taken_once() -> None:
    request = push_request("app", ["a", "b", "a", "c", "b"], "t", "b", tokens=["x", "x"])
    once = validate.without_repeats(request)
    assert once["pins"] == ["a", "b", "c"] and once["tokens"] == ["x"] and request["pins"] == ["a", "b", "a", "c", "b"]
