"""Pure fan-out logic: the device directory and request expansion."""
import pytest

from jobs import devices, requests, shards
from jobs.policy.preferences import apply_preference
from pushpipe.producer import device_event, push_request


def test_bind_report_switch_and_unbind() -> None:
    state = devices.apply_event({}, device_event("a", "u1", "tok1"))
    state = devices.apply_event(state, device_event("a", "u1", "tok2", vendor="fcm"))
    assert devices.targets_by_vendor(state, "u1", "production") == {"apns": [("tok1", "u1", "")], "fcm": [("tok2", "u1", "")]}
    state = devices.apply_event(state, device_event("a", "u1", "tok1", kind="switch_off"))
    assert devices.targets_by_vendor(state, "u1", "production") == {"fcm": [("tok2", "u1", "")]}
    state = devices.apply_event(state, device_event("a", "u1", "tok1", kind="switch_on", brand="Apple"))
    assert ("tok1", "u1", "") in devices.targets_by_vendor(state, "u1", "production")["apns"]
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
    assert devices.targets_by_vendor(state, "u1", "test") == {"apns": [("dev", "u1", "")]}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"msg_id": " "}, "msg_id is empty"),
        ({"app_id": ""}, "app_id is empty"),
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
    with pytest.raises(requests.InvalidRequest, match=reason):
        requests.validate(request)


def test_batches_carry_the_request_and_are_chunked() -> None:
    request = push_request("a", ["u1"], "t", "b", ttl_s=60)
    parts = list(requests.chunks([(f"t{i}", f"u{i}", "um" if i == 1 else "") for i in range(7)], 3))
    assert [len(p) for p in parts] == [3, 3, 1]
    batch = requests.batch(request, "apns", parts[0], now_ms=1)
    assert batch["msg_id"] == request["msg_id"] and batch["tokens"] == ["t0", "t1", "t2"]
    assert batch["pins"] == ["u0", "u1", "u2"] and batch["fallback_tokens"] == {"t1": "um"}
    assert batch["expires_at"] == request["created_at"] + 60_000


def test_what_is_not_sent_becomes_a_result_with_reasons() -> None:
    result = requests.unsent_result(push_request("a", ["u1"], "t", "b"), "pin:u1", [("", "suppressed", "no_devices")], "u1", now_ms=1)
    assert result["outcomes"][0]["outcome"] == "suppressed" and result["outcomes"][0]["code"] == "no_devices"
    assert result["batch_id"].endswith(":pin:u1") and result["vendor"] == requests.NO_VENDOR


def test_occurrences_of_a_recurring_request_have_their_own_id_and_clock() -> None:
    request = push_request("a", ["u1"], "t", "b", recurrence="0 9 * * *")
    fired = requests.occurrence(request, 5_000)
    assert fired["msg_id"] == f"{request['msg_id']}@5000" and fired["created_at"] == 5_000 and not fired["recurrence"]


def test_shards_keep_only_the_preferences_that_can_block_a_broadcast() -> None:
    prefs = apply_preference(None, {"kind": "opt_out", "category": "marketing", "ts": 1})
    assert shards.blocking_preferences(prefs) == {"opted_out_categories": ["marketing"]}
    back = apply_preference(prefs, {"kind": "opt_in", "category": "marketing", "ts": 2})
    assert shards.blocking_preferences(back) is None
    quiet = apply_preference(None, {"kind": "set_quiet_hours", "quiet_start": "22:00", "quiet_end": "07:00", "ts": 1})
    assert shards.blocking_preferences(quiet) is None
