"""Pure policy: user preferences, their bounded history and what they block."""
import pytest

from pushpipe.jobs.policy.preferences import HISTORY_LIMIT, InvalidPreference, apply_preference, blocked_reason, new_preferences


def event(kind: str, ts: int = 1, **fields) -> dict:
    return {"kind": kind, "category": None, "channel": None, "timezone": None, "quiet_start": None,
            "quiet_end": None, "ts": ts, **fields}


def apply_all(*events: dict) -> dict:
    prefs = new_preferences()
    for e in events:
        prefs = apply_preference(prefs, e)
    return prefs


def test_opt_out_and_in_of_categories_and_channels() -> None:
    prefs = apply_all(event("opt_out", category="Marketing"), event("opt_out", channel="xiaomi"),
                      event("opt_out", category="news"), event("opt_in", category="marketing"))
    assert prefs["opted_out_categories"] == ["news"]
    assert prefs["opted_out_channels"] == ["xiaomi"]
    assert apply_preference(prefs, event("opt_in", channel="xiaomi"))["opted_out_channels"] == []


def test_subscription_timezone_and_quiet_hours() -> None:
    prefs = apply_all(event("unsubscribe", 1), event("set_timezone", 2, timezone="Asia/Shanghai"),
                      event("set_quiet_hours", 3, quiet_start="22:00", quiet_end="07:30"))
    assert (prefs["unsubscribed"], prefs["timezone"], prefs["quiet_start"], prefs["quiet_end"]) == (
        True, "Asia/Shanghai", "22:00", "07:30")
    prefs = apply_all(event("resubscribe", 4), event("set_timezone", 5), event("set_quiet_hours", 6))
    assert (prefs["unsubscribed"], prefs["timezone"], prefs["quiet_start"]) == (False, None, None)


def test_apply_does_not_change_its_input() -> None:
    prefs = new_preferences()
    apply_preference(prefs, event("opt_out", category="marketing"))
    assert prefs == new_preferences()
    assert apply_preference(None, event("unsubscribe"))["unsubscribed"] is True


def test_history_keeps_the_last_changes_with_their_ts() -> None:
    prefs = apply_all(*(event("opt_out" if i % 2 else "opt_in", ts=1000 + i, category="promo") for i in range(25)))
    history = prefs["history"]
    assert len(history) == HISTORY_LIMIT
    assert [h["ts"] for h in history] == list(range(1005, 1025))
    assert history[-1] == {"kind": "opt_in", "ts": 1024, "category": "promo"}
    assert prefs["updated_at"] == 1024


@pytest.mark.parametrize(("bad", "reason"), [
    (event("explode"), "unknown preference event kind"),
    (event("opt_out"), "exactly one of category or channel"),
    (event("opt_out", category="marketing", channel="xiaomi"), "exactly one of category or channel"),
    (event("set_timezone", timezone="Mars/Olympus"), "unknown time zone"),
    (event("set_quiet_hours", quiet_start="22:00"), "both quiet_start and quiet_end"),
    (event("set_quiet_hours", quiet_start="25:00", quiet_end="07:00"), "HH:MM"),
    (event("unsubscribe", ts="yesterday"), "ts must be epoch milliseconds"),
])
def test_bad_events_are_refused_with_a_reason(bad: dict, reason: str) -> None:
    with pytest.raises(InvalidPreference, match=reason):
        apply_preference(new_preferences(), bad)


@pytest.mark.parametrize(("events", "category", "vendor", "reason"), [
    ([], "marketing", "apns", None),
    # unsubscribe blocks marketing-class categories only
    ([event("unsubscribe")], "marketing", "apns", "unsubscribed"),
    ([event("unsubscribe")], "promo", "apns", "unsubscribed"),
    ([event("unsubscribe")], "transactional", "apns", None),
    ([event("unsubscribe")], "security", "apns", None),
    ([event("unsubscribe"), event("resubscribe")], "marketing", "apns", None),
    # category opt-outs never block service-class categories
    ([event("opt_out", category="marketing")], "marketing", "fcm", "opted_out:category:marketing"),
    ([event("opt_out", category="marketing")], "news", "fcm", None),
    ([event("opt_out", category="transactional")], "transactional", "fcm", None),
    ([event("opt_out", category="account")], "account", "fcm", None),
    # channel opt-outs block everything on the channel, transactional too
    ([event("opt_out", channel="xiaomi")], "transactional", "xiaomi", "opted_out:channel:xiaomi"),
    ([event("opt_out", channel="xiaomi")], "marketing", "hms", None),
    ([event("opt_out", channel="push")], "transactional", "hms", "opted_out:channel:push"),
    ([event("opt_out", channel="xiaomi")], "marketing", None, None),
    # unsubscribe is reported before a category or channel opt-out
    ([event("opt_out", channel="push"), event("unsubscribe")], "marketing", "apns", "unsubscribed"),
])
def test_blocked_reason(events: list, category: str, vendor: str | None, reason: str | None) -> None:
    assert blocked_reason(apply_all(*events), category, vendor) == reason


def test_blocked_reason_follows_the_class_mapping() -> None:
    prefs = apply_all(event("unsubscribe"))
    assert blocked_reason(prefs, "news", "apns", {"news": "service"}) is None
    assert blocked_reason(prefs, "transactional", "apns", {}) == "unsubscribed"
    assert blocked_reason({}, "marketing", "apns") is None
