"""Pure policy: decide() orderings per (request, pin) and filter_devices() per device."""
import datetime as dt
import pickle
from zoneinfo import ZoneInfo

import pytest

from pushpipe.jobs.policy.caps import CapConfig
from pushpipe.jobs.policy.classify import VendorQuota
from pushpipe.jobs.policy.decide import Defer, PolicyConfig, Send, Suppress, decide, effective_timezone, filter_devices
from pushpipe.jobs.policy.preferences import apply_preference, new_preferences

SHANGHAI = "Asia/Shanghai"
CONFIG = PolicyConfig(caps=CapConfig({"marketing": 2}), default_quiet=("22:00", "08:00"))


def ms(local: str, tz: str = "UTC") -> int:
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


NOON = ms("2026-06-10T12:00")
NIGHT = ms("2026-06-10T23:00")


def request(category: str = "marketing", priority: str = "normal", created_at: int = NOON - 1000,
            ttl_s: int = 86_400, environment: str = "production") -> dict:
    return {"msg_id": "m1", "app_id": "app", "environment": environment, "category": category,
            "priority": priority, "created_at": created_at, "ttl_s": ttl_s, "notification": {}}


def device(vendor: str = "apns", tz: str = "", enabled: bool = True, environment: str = "production",
           updated_at: int = 1) -> dict:
    return {"vendor": vendor, "environment": environment, "enabled": enabled, "timezone": tz,
            "updated_at": updated_at}


def prefs(*events: dict) -> dict:
    state = new_preferences()
    for e in events:
        state = apply_preference(state, {"ts": 1, **e})
    return state


def pin(prefs_: dict | None = None, caps: dict | None = None, **devices: dict) -> dict:
    return {"prefs": prefs_ or new_preferences(), "caps": caps or {}, "devices": devices or {"t1": device()}}


def test_send_counts_the_cap_on_the_users_day() -> None:
    decision = decide(request(), pin(), NOON, CONFIG)
    assert decision == Send({**pin(), "caps": {"2026-06-10|marketing": 1}})


@pytest.mark.parametrize(("req", "state", "now", "expected"), [
    # no enabled device of the request's environment
    (request(), pin(t1=device(enabled=False)), NOON, Suppress("no_devices", pin(t1=device(enabled=False)))),
    (request(environment="test"), pin(), NOON, Suppress("no_devices", pin())),
    # preferences come before quiet hours and caps
    (request(), pin(prefs({"kind": "unsubscribe"})), NIGHT, Suppress("unsubscribed", pin(prefs({"kind": "unsubscribe"})))),
    (request(), pin(caps={"2026-06-10|marketing": 2}, prefs_=prefs({"kind": "opt_out", "category": "marketing"})),
     NOON, Suppress("opted_out:category:marketing",
                    pin(caps={"2026-06-10|marketing": 2}, prefs_=prefs({"kind": "opt_out", "category": "marketing"})))),
    # quiet hours come before caps: an exhausted cap still defers at night
    (request(), pin(caps={"2026-06-10|marketing": 2}), NIGHT, Defer(ms("2026-06-11T08:00"), "quiet_hours")),
    (request(), pin(caps={"2026-06-10|marketing": 2}), NOON,
     Suppress("frequency_cap:marketing", pin(caps={"2026-06-10|marketing": 2}))),
])
def test_orderings(req: dict, state: dict, now: int, expected) -> None:
    assert decide(req, state, now, CONFIG) == expected


def test_transactional_and_high_priority_skip_quiet_hours_and_unsubscribe() -> None:
    unsubscribed = pin(prefs({"kind": "unsubscribe"}))
    assert isinstance(decide(request("transactional"), unsubscribed, NIGHT, CONFIG), Send)
    assert isinstance(decide(request(priority="high"), pin(), NIGHT, CONFIG), Send)
    assert isinstance(decide(request(priority="high"), unsubscribed, NIGHT, CONFIG), Suppress)


def test_channel_opt_outs_suppress_only_when_every_device_is_blocked() -> None:
    no_xiaomi = prefs({"kind": "opt_out", "channel": "xiaomi"})
    both = pin(no_xiaomi, a=device("xiaomi"), b=device("hms"))
    assert isinstance(decide(request("transactional"), both, NOON, CONFIG), Send)
    only = pin(no_xiaomi, a=device("xiaomi"))
    assert decide(request("transactional"), only, NOON, CONFIG) == Suppress("opted_out:channel:xiaomi", only)


def test_quiet_hours_use_the_users_zone() -> None:
    """12:00Z is 20:00 in Shanghai (not quiet); 15:00Z is 23:00 there (quiet until 08:00 = 00:00Z)."""
    shanghai = pin(prefs({"kind": "set_timezone", "timezone": SHANGHAI}))
    assert isinstance(decide(request(), shanghai, NOON, CONFIG), Send)
    assert decide(request(), shanghai, ms("2026-06-10T15:00"), CONFIG) == Defer(ms("2026-06-11T00:00"), "quiet_hours")


def test_user_quiet_hours_override_the_app_default() -> None:
    lunch = pin(prefs({"kind": "set_quiet_hours", "quiet_start": "11:30", "quiet_end": "13:00"}))
    assert decide(request(), lunch, NOON, CONFIG) == Defer(ms("2026-06-10T13:00"), "quiet_hours")
    assert isinstance(decide(request(), lunch, NIGHT, CONFIG), Send)
    assert isinstance(decide(request(), pin(), NIGHT, PolicyConfig()), Send)  # no default quiet hours


def test_a_request_expiring_before_the_window_ends_is_suppressed() -> None:
    short = request(created_at=NIGHT - 1000, ttl_s=3600)
    assert decide(short, pin(), NIGHT, CONFIG) == Suppress("quiet_hours:expires_before_end", pin())


def test_deferred_request_is_sent_when_called_again_at_the_window_end() -> None:
    deferred = decide(request(), pin(), NIGHT, CONFIG)
    assert isinstance(deferred, Defer)
    sent = decide(request(), pin(), deferred.until_ms, CONFIG)
    assert sent == Send({**pin(), "caps": {"2026-06-11|marketing": 1}})


def test_caps_count_on_the_users_local_day() -> None:
    """23:30Z on June 10 is already June 11 in Shanghai: yesterday's full cap does not apply."""
    config = PolicyConfig(caps=CapConfig({"marketing": 1}))
    shanghai = pin(prefs({"kind": "set_timezone", "timezone": SHANGHAI}), caps={"2026-06-10|marketing": 1})
    decision = decide(request(), shanghai, ms("2026-06-10T23:30"), config)
    assert isinstance(decision, Send) and decision.new_state["caps"] == {"2026-06-10|marketing": 1,
                                                                          "2026-06-11|marketing": 1}
    assert isinstance(decide(request(), shanghai, ms("2026-06-10T15:30"), config), Suppress)


def test_decide_does_not_change_the_state_it_is_given() -> None:
    state = pin()
    decide(request(), state, NOON, CONFIG)
    assert state == pin()


@pytest.mark.parametrize(("user_tz", "devices", "zone"), [
    ("Europe/Paris", {"a": device(tz=SHANGHAI)}, "Europe/Paris"),
    (None, {"a": device(tz=SHANGHAI, updated_at=1), "b": device(tz="Asia/Tokyo", updated_at=2)}, "Asia/Tokyo"),
    (None, {"a": device(tz="Bad/Zone", updated_at=2), "b": device(tz=SHANGHAI, updated_at=1)}, SHANGHAI),
    (None, {"a": device(tz="")}, "America/Chicago"),
])
def test_effective_timezone(user_tz, devices: dict, zone: str) -> None:
    assert effective_timezone({"timezone": user_tz}, devices, "America/Chicago") == zone


def test_filter_devices_applies_vendor_quotas_per_device() -> None:
    devices = {"x1": device("xiaomi"), "x2": device("xiaomi"), "i1": device("apns"), "off": device("oppo", enabled=False)}
    state: dict = {}
    for _ in range(2):
        allowed, suppressed, state = filter_devices(request(), devices, state, NOON, CONFIG)
        assert (allowed, suppressed) == (["i1", "x1", "x2"], {})
    allowed, suppressed, state = filter_devices(request(), devices, state, NOON, CONFIG)
    assert allowed == ["i1"]
    assert suppressed == {"x1": "vendor_quota:xiaomi:marketing", "x2": "vendor_quota:xiaomi:marketing"}
    assert state == {"2026-06-10|x1": 2, "2026-06-10|x2": 2}
    assert filter_devices(request("transactional"), devices, state, NOON, CONFIG)[0] == ["i1", "x1", "x2"]


def test_filter_devices_counts_on_china_time() -> None:
    devices = {"x1": device("xiaomi")}
    state = {"2026-06-10|x1": 2}
    assert filter_devices(request(), devices, state, ms("2026-06-10T15:59"), CONFIG)[0] == []
    assert filter_devices(request(), devices, state, ms("2026-06-10T16:00"), CONFIG)[0] == ["x1"]


def test_filter_devices_unclassified_xiaomi_and_channel_opt_outs() -> None:
    config = PolicyConfig(vendor_quota=VendorQuota(unclassified_vendors=frozenset({"xiaomi"})))
    devices = {"x1": device("xiaomi"), "h1": device("hms")}
    _, _, state = filter_devices(request("transactional"), devices, {}, NOON, config)
    allowed, suppressed, _ = filter_devices(request("transactional"), devices, state, NOON, config)
    assert (allowed, suppressed) == (["h1"], {"x1": "vendor_quota:xiaomi:unclassified"})
    no_hms = prefs({"kind": "opt_out", "channel": "hms"})
    allowed, suppressed, state = filter_devices(request(), devices, {}, NOON, CONFIG, prefs=no_hms)
    assert (allowed, suppressed, state) == (["x1"], {"h1": "opted_out:channel:hms"}, {"2026-06-10|x1": 1})


def test_filter_devices_drops_state_of_tokens_the_pin_no_longer_has() -> None:
    state = {"2026-06-10|gone": 2, "2026-06-10|x1": 1, "2026-06-01|x1": 5}
    _, _, new = filter_devices(request("transactional"), {"x1": device("xiaomi")}, state, NOON, CONFIG)
    assert new == {"2026-06-10|x1": 1}


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"default_tz": "Nowhere"}, "unknown time zone"),
    ({"default_quiet": ("22:00",)}, "default_quiet"),
    ({"default_quiet": ("22:00", "8am")}, "HH:MM"),
    ({"classes": {"news": "urgent"}}, "class of 'news'"),
])
def test_bad_policy_configs_are_refused(kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        PolicyConfig(**kwargs)


def test_configs_pickle_for_flink() -> None:
    config = PolicyConfig(caps=CapConfig({"marketing": 3}), default_quiet=("22:00", "08:00"),
                          vendor_quota=VendorQuota(app_kind="news"))
    assert pickle.loads(pickle.dumps(config)) == config
