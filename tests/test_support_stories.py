"""The diagnosis's reasoning without services: plain words per outcome, hops against their SLA, preferences
folded as fan-out folds them, the verdict's findings, device and preference documents."""
from __future__ import annotations

from pushpipe.jobs.analytics import ParseDevices, deleted_preference, well_formed, with_setting
from pushpipe.jobs.deadletters import Tombstone
from pushpipe.producer import device_event, preference_event
from pushpipe.schemas import codec
from pushpipe.sinks import device_docs
from pushpipe.support import diagnose, explain, testpush


def test_each_outcome_has_its_plain_reason() -> None:
    assert "quiet hours" in explain.why({"outcome": "suppressed", "code": "quiet_hours", "reason": "quiet_hours:expires_before_end"})
    assert "daily cap for marketing" in explain.why({"outcome": "suppressed", "code": "frequency_cap", "reason": "frequency_cap:marketing"})
    assert "opted out (category marketing)" in explain.why({"outcome": "suppressed", "code": "opted_out",
                                                             "reason": "opted_out:category:marketing"})
    assert "no longer valid (80300007)" in explain.why({"outcome": "invalid_token", "code": "80300007"})
    assert "circuit breaker was open" in explain.why({"outcome": "unavailable", "code": "circuit_open"})
    assert "throttling" in explain.why({"outcome": "throttled", "code": "429"})
    assert "switched off (receipt 3)" in explain.why({"outcome": "accepted", "receipt": "switched_off", "receipt_code": "3"})
    assert "opened at" in explain.why({"outcome": "accepted", "delivered_at": 1, "opened_at": 2})
    assert "APNs sends no receipts" in explain.why({"outcome": "accepted", "vendor": "apns", "completed_at": 1})
    assert "fan-out held it back (mystery)" in explain.why({"outcome": "suppressed", "code": "mystery", "reason": "mystery"})


def test_hops_are_timed_from_the_hop_before_against_their_sla() -> None:
    times = {"requested_at": {"n": 2, "first": 1000, "last": 1000, "median": 1000},
             "taken_at": {"n": 2, "first": 1100, "last": 1100, "median": 1100},
             "due_at": {"n": 2, "first": 1000, "last": 1000, "median": 1000},  # due at once: no hold
             "batched_at": {"n": 2, "first": 1300, "last": 1300, "median": 1300},
             "sent_at": {"n": 2, "first": 2500, "last": 2600, "median": 2550},
             "completed_at": {"n": 2, "first": 2600, "last": 2700, "median": 2650},
             "delivered_at": {"n": 0, "first": None, "last": None, "median": None}}
    hops = diagnose.hop_view(times)
    assert [h["name"] for h in hops] == ["produced", "taken in", "expanded and batched", "sent", "accepted"]
    by_name = {h["name"]: h for h in hops}
    assert by_name["taken in"]["since_previous_ms"] == 100 and by_name["taken in"]["within_sla"] is True
    assert by_name["sent"]["since_previous_ms"] == 1200 and by_name["sent"]["within_sla"] is False
    assert by_name["produced"]["within_sla"] is None


def test_a_held_message_shows_its_hold() -> None:
    times = {"requested_at": {"n": 1, "first": 1000, "last": 1000, "median": 1000},
             "taken_at": {"n": 1, "first": 1100, "last": 1100, "median": 1100},
             "due_at": {"n": 1, "first": 60_000, "last": 60_000, "median": 60_000},
             "batched_at": {"n": 1, "first": 60_100, "last": 60_100, "median": 60_100}}
    hops = diagnose.hop_view(times)
    assert [h["name"] for h in hops] == ["produced", "taken in", "held until due", "expanded and batched"]
    assert hops[-1]["since_previous_ms"] == 100


def test_preferences_fold_as_fan_out_folds_them_and_skip_a_bad_one() -> None:
    docs = [preference_event("a", "u", "opt_out", category="marketing") | {"ts": 1},
            preference_event("a", "u", "set_timezone", timezone="Not/AZone") | {"ts": 2},
            preference_event("a", "u", "unsubscribe") | {"ts": 3}]
    prefs = diagnose.fold(docs)
    assert prefs["opted_out_categories"] == ["marketing"] and prefs["unsubscribed"] and prefs["timezone"] is None


def test_the_last_receipt_is_the_newest_state_heard() -> None:
    deliveries = [{"delivered_at": 5, "opened_at": 9}, {"receipt": "switched_off", "receipt_code": "3", "receipt_at": 7}]
    assert diagnose.last_receipt(deliveries) == {"state": "opened", "code": "", "ts": 9}
    assert diagnose.last_receipt([{"outcome": "accepted"}]) is None


def device(token: str, state: str = "active", switch: str = "on") -> dict:
    return {"token": token, "vendor": "hms", "state": state, "state_reason": "", "switch": switch, "updated_at": 1, "bound_at": 1}


def test_findings_name_dead_and_switched_off_devices() -> None:
    found = diagnose.device_findings([device("t1", switch="off"), device("t2", state="cleaned")])
    assert any("t1" in f and "switched off" in f for f in found)
    assert any("t2" in f and "cleaned" in f for f in found)
    assert any("Every active device has notifications switched off" in f for f in found)
    assert diagnose.device_findings([]) == ["The user has no device registered: nothing can reach them until the app binds one."]


def test_device_documents_follow_the_device_events() -> None:
    bind = device_event("a", "u", "tok", vendor="hms", brand="huawei")
    change = device_docs.device_change(bind)
    assert change["state"] == "active" and change["bound_at"] == bind["ts"] and change["brand"] == "huawei"
    off = device_docs.device_change(device_event("a", "u", "tok", vendor="hms", kind="switch_off"))
    assert off["switch"] == "off" and "state" not in off
    dead = device_docs.device_change(device_event("a", "u", "tok", vendor="hms", kind="invalid_token", reason="80300007"))
    assert dead == {"state": "cleaned", "state_reason": "80300007", "updated_at": dead["updated_at"]}
    [action] = device_docs.device_actions("devices", bind)
    assert action["_id"] == "a:tok" and action["doc_as_upsert"]
    refreshed = device_docs.device_actions("devices", device_event("a", "u", "new", vendor="hms", kind="report", previous_token="tok"))
    assert [(a["_id"], a["doc"]["state"]) for a in refreshed] == [("a:new", "active"), ("a:tok", "replaced")]


def test_preference_documents_are_the_latest_of_each_setting_and_tombstones_delete() -> None:
    event = with_setting(preference_event("a", "u", "opt_out", category="marketing"))
    assert event["setting"] == "category:marketing"
    action = device_docs.preference_action("prefs", event)
    assert action["_op_type"] == "index" and action["_id"] == "a|u|category:marketing"
    long = device_docs.preference_action("prefs", {**event, "setting": "category:" + "x" * 600})
    assert long["_id"].startswith("sha256:") and len(long["_id"]) < 512
    deleted = deleted_preference(Tombstone("user.preferences", "a|u|quiet_hours"))
    assert deleted is not None
    assert device_docs.preference_action("prefs", deleted) == {"_op_type": "delete", "_index": "prefs", "_id": "a|u|quiet_hours"}
    assert deleted_preference(Tombstone("user.preferences", "a|u")) is None
    assert deleted_preference(Tombstone("user.preferences", "a|" + "u" * 900_000 + "|timezone")) is None


def test_a_test_push_is_done_when_every_device_came_to_rest() -> None:
    accepted = {"outcome": "accepted", "delivered_at": 5}
    silent = {"outcome": "accepted"}
    failed = {"outcome": "invalid_token", "final": True}
    assert testpush.answered(accepted) and testpush.answered(failed) and not testpush.answered(silent)
    ok, line = testpush.summary({"deliveries": [accepted, silent]})
    assert ok and "delivered to 1" in line and "no receipt yet from 1" in line
    ok, _ = testpush.summary({"deliveries": [accepted, failed]})
    assert not ok


class NotCounted:
    def count(self, *args: object, **labels: object) -> None:
        pass


def test_only_well_formed_device_and_preference_events_make_documents() -> None:
    assert well_formed(preference_event("a", "u", "unsubscribe"))
    assert not well_formed(preference_event("a", "u" * 300, "unsubscribe"))
    parse = ParseDevices(["device.events"])
    parse.counters = NotCounted()
    good = list(parse.process_element(codec.encode("DeviceEvent", device_event("a", "u", "tok")), None))  # type: ignore[arg-type]
    bad = list(parse.process_element(codec.encode("DeviceEvent", device_event("a", "u", "t" * 900_000)), None))  # type: ignore[arg-type]
    assert len(good) == 1 and bad == []


def test_a_message_with_nothing_counted_yet_is_not_called_a_success() -> None:
    nothing = {"counts": {}, "hops": [], "failures": []}
    assert diagnose.message_verdict(nothing)[-1] == diagnose.NOTHING_COUNTED
    sent = {"counts": {"accepted": 1}, "hops": [], "failures": []}
    assert diagnose.message_verdict(sent)[-1] == "Every hop was within its SLA and nothing failed."
