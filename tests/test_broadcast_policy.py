"""Broadcasts follow the pin policy: which go through the pins, and what a pin does with one (fakes of Flink's
state, tests/flink_fakes.py); tests/test_broadcast_policy_e2e.py runs it through the real stack."""
from __future__ import annotations

import json

import pytest

from flink_fakes import Harness
from pushpipe.config import SettingsError, load
from pushpipe.jobs.fanout.devices import apply_event
from pushpipe.jobs.fanout.expand import expand_for_pin, new_pin_state
from pushpipe.jobs.fanout.messages import GATHER, RESULTS, ToPin
from pushpipe.jobs.fanout.pin_directory import PinDirectory
from pushpipe.jobs.fanout.shard_directory import ShardDirectory
from pushpipe.jobs.policy.caps import CapConfig
from pushpipe.jobs.policy.classify import VendorQuota
from pushpipe.jobs.policy.decide import PolicyConfig, per_user_policy_applies
from pushpipe.jobs.policy.policyfile import PolicyFileError, policy_config
from pushpipe.jobs.policy.templates import TemplateStore
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import codec, keys
from pushpipe.schemas.results import NO_VENDOR

NOON = 1_795_348_800_000  # 2026-11-22 12:00 UTC
CAPS = PolicyConfig(caps=CapConfig(per_day={"marketing": 3}))


def broadcast(category: str, **fields) -> dict:
    return push_request("a", [], "t", "b", target=fields.pop("target", "broadcast"), category=category, **fields)


def test_only_urgent_uncapped_unquota_broadcasts_skip_the_pins() -> None:
    assert not per_user_policy_applies(broadcast("transactional"), CAPS)
    assert per_user_policy_applies(broadcast("marketing"), CAPS), "quiet hours, caps and vendor quotas"
    assert per_user_policy_applies(broadcast("news", priority="high"), CAPS), "urgent, but a vendor counts marketing"
    assert per_user_policy_applies(broadcast("transactional"), PolicyConfig(caps=CapConfig(per_day={"transactional": 9})))
    unclassified = PolicyConfig(vendor_quota=VendorQuota(unclassified_vendors=frozenset({"xiaomi"})))
    assert per_user_policy_applies(broadcast("transactional"), unclassified), "Xiaomi counts every message"
    assert not per_user_policy_applies(broadcast("news", priority="high"), PolicyConfig(vendor_quota=VendorQuota(marketing_per_day={})))


def test_a_segment_reaches_only_its_devices_and_counts_the_pin_once() -> None:
    state = new_pin_state()
    for event in (device_event("a", "u", "hms1", vendor="hms", brand="huawei"), device_event("a", "u", "ios1")):
        state["devices"] = apply_event(state["devices"], event)
    segment = broadcast("marketing", target="segment", segment={"brand": "huawei"})
    result = expand_for_pin(segment, "u", state, NOON, CAPS, TemplateStore.from_dict({"templates": {}}), only={"hms1"})
    assert [t for _, targets in result.groups.values() for t, *_ in targets] == ["hms1"]
    assert sum(result.state["caps"].values()) == 1 and list(result.state["vendor_quota"]) == ["2026-11-22|hms1"]
    assert result.state["devices"] == state["devices"], "the pin keeps all its devices"


def test_a_pin_takes_a_broadcast_once_however_many_shards_send_it_and_caps_it_like_a_pin_push(tmp_path) -> None:
    directory, key = Harness(PinDirectory(load(home=tmp_path))), keys.pin_key("a", "u")  # marketing: 3 a day
    for token in ("ios1", "ios2"):  # two devices, in two shards: both shards send the pin each broadcast
        directory.process(ToPin(key, "device", device_event("a", "u", token)))
    sales = [broadcast("marketing") for _ in range(3)]
    taken = [out for sale in sales for _ in range(2) for out in directory.process(ToPin(key, "broadcast", sale))]
    gathered = [payload for tag, payload in taken if tag is GATHER]
    assert [(g.vendor, sorted(token for token, *_ in g.items)) for g in gathered] == [("apns", ["ios1", "ios2"])] * 3
    assert sum(directory.state("pin", key).value()["caps"].values()) == 3, "each broadcast counted once"
    [(tag, capped)] = directory.process(ToPin(key, "broadcast", broadcast("marketing")))
    assert tag is GATHER and capped.vendor == NO_VENDOR, "a broadcast's outcomes are gathered"
    assert [(o.token, o.reason) for o in capped.items] == [("ios1", "frequency_cap:marketing"), ("ios2", "frequency_cap:marketing")]
    pin_push = push_request("a", ["u"], "t", "b", category="marketing")
    [(tag, result)] = directory.process(ToPin(key, "request", pin_push))
    assert tag is RESULTS
    assert [o["reason"] for o in codec.decode("DispatchResult", result)["outcomes"]] == ["frequency_cap:marketing"]


def test_quotas_and_quiet_hours_are_settings(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.setenv("PUSHPIPE_VENDOR_QUOTAS", "hms=5")
    monkeypatch.setenv("PUSHPIPE_QUIET_HOURS", "22:00-08:00")
    policy = policy_config(load())
    assert policy.vendor_quota.cap("hms", "marketing") == 5 and policy.vendor_quota.cap("vivo", "marketing") == 2
    assert policy.default_quiet == ("22:00", "08:00") and policy.caps.limit("marketing") == 3
    monkeypatch.setenv("PUSHPIPE_QUIET_HOURS", "22:00")
    with pytest.raises(SettingsError, match="PUSHPIPE_QUIET_HOURS"):
        load()


def test_the_policy_file_overrides_the_settings_and_a_bad_one_names_what_is_wrong(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    settings = load()
    settings.policy_file.parent.mkdir(parents=True)
    settings.policy_file.write_text(json.dumps({"daily_caps": {"news": 1}, "vendor_quotas": {"vivo": 4}, "app_kind": "news",
                                                "quiet_hours": "23:00-07:00", "classes": {"orders": "service"}}))
    policy = policy_config(settings)
    assert policy.caps.per_day == {"news": 1} and policy.default_quiet == ("23:00", "07:00")
    assert (policy.vendor_quota.cap("vivo", "marketing"), policy.vendor_quota.cap("hms", "marketing")) == (4, 5)
    assert policy.classes["orders"] == "service" and policy.classes["transactional"] == "service"
    settings.policy_file.write_text(json.dumps({"daily_caps": {"news": -1}, "quiet": "x", "default_tz": "Mars/Base"}))
    with pytest.raises(PolicyFileError) as bad:
        policy_config(settings)
    assert "daily_caps.news" in str(bad.value) and "quiet: Extra inputs are not permitted" in str(bad.value)
    settings.policy_file.write_text(json.dumps({"default_tz": "Mars/Base"}))
    with pytest.raises(PolicyFileError, match="Mars/Base"):
        policy_config(settings)


def test_a_directory_opens_with_the_policy_and_the_templates(tmp_path) -> None:
    for directory in (PinDirectory(load(home=tmp_path)), ShardDirectory(load(home=tmp_path))):
        Harness(directory)
        assert directory.policy.caps.limit("marketing") == 3 and directory.templates is not None
