"""Pure policy: service vs marketing classes and per-device daily vendor quotas (VENDORS.md section 7)."""
import pytest

from pushpipe.jobs.policy.classify import VendorQuota, message_class, vendor_quota_check

DAY = "2026-05-01"


@pytest.mark.parametrize(("category", "cls"), [
    ("transactional", "service"), ("account", "service"), ("Security", "service"), (" system ", "service"),
    ("marketing", "marketing"), ("news", "marketing"), ("", "marketing"), (None, "marketing"),
])
def test_default_classes(category, cls: str) -> None:
    assert message_class(category) == cls


def test_classes_are_configurable() -> None:
    classes = {"news": "service", "transactional": "marketing"}
    assert message_class("news", classes) == "service"
    assert message_class("transactional", classes) == "marketing"


def send_n(n: int, vendor: str, cls: str, quota: VendorQuota, token: str = "t1", state: dict | None = None):
    state, results = dict(state or {}), []
    for _ in range(n):
        allowed, state = vendor_quota_check(state, vendor, token, DAY, cls, quota)
        results.append(allowed)
    return results, state


@pytest.mark.parametrize(("vendor", "quota", "cls", "allowed"), [
    # non-news apps: 2 marketing messages per device per day on the China vendors
    *[(v, VendorQuota(), "marketing", 2) for v in ("hms", "honor", "oppo", "vivo", "xiaomi")],
    # news apps: 5
    *[(v, VendorQuota(app_kind="news"), "marketing", 5) for v in ("hms", "honor", "oppo", "vivo", "xiaomi")],
    # service messages and vendors without a per-device cap are unlimited
    ("xiaomi", VendorQuota(), "service", 8),
    ("apns", VendorQuota(), "marketing", 8),
    ("fcm", VendorQuota(), "marketing", 8),
    ("umeng", VendorQuota(), "marketing", 8),
    # Xiaomi without registered message classes: 1 a day, service included
    ("xiaomi", VendorQuota(unclassified_vendors=frozenset({"xiaomi"})), "service", 1),
    ("xiaomi", VendorQuota(unclassified_vendors=frozenset({"xiaomi"})), "marketing", 1),
    # per-vendor override
    ("oppo", VendorQuota(marketing_per_day={"oppo": 3}), "marketing", 3),
    ("vivo", VendorQuota(marketing_per_day={"oppo": 3}), "marketing", 8),
    ("meizu", VendorQuota(marketing_per_day={"meizu": 0}), "marketing", 0),
])
def test_quotas(vendor: str, quota: VendorQuota, cls: str, allowed: int) -> None:
    results, _ = send_n(8, vendor, cls, quota)
    assert results == [True] * allowed + [False] * (8 - allowed)


def test_quota_is_per_device_and_per_day() -> None:
    quota = VendorQuota()
    _, state = send_n(2, "xiaomi", "marketing", quota, token="a")
    assert vendor_quota_check(state, "xiaomi", "a", DAY, "marketing", quota)[0] is False
    assert vendor_quota_check(state, "xiaomi", "b", DAY, "marketing", quota)[0] is True
    allowed, next_day = vendor_quota_check(state, "xiaomi", "a", "2026-05-02", "marketing", quota)
    assert allowed and next_day == {"2026-05-01|a": 2, "2026-05-02|a": 1}
    _, pruned = vendor_quota_check(next_day, "xiaomi", "a", "2026-05-03", "service", quota)
    assert pruned == {"2026-05-02|a": 1}


def test_uncapped_messages_are_not_counted() -> None:
    assert vendor_quota_check({}, "apns", "t", DAY, "marketing", VendorQuota()) == (True, {})
    assert vendor_quota_check({}, "hms", "t", DAY, "service", VendorQuota()) == (True, {})


def test_vendor_day_is_china_time_by_default() -> None:
    quota = VendorQuota()
    assert quota.day(1777651199000) == "2026-05-01"  # 2026-05-01T15:59:59Z = 23:59:59 in Shanghai
    assert quota.day(1777651200000) == "2026-05-02"
    assert VendorQuota(reset_tz="UTC").day(1777651200000) == "2026-05-01"


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"app_kind": "blog"}, "app_kind"),
    ({"marketing_per_day": {"oppo": -1}}, "marketing_per_day"),
    ({"unclassified_vendors": frozenset({"oppo"})}, "no cap in unclassified_per_day"),
    ({"reset_tz": "China/Beijing"}, "unknown time zone"),
])
def test_bad_quota_configs_are_refused(kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        VendorQuota(**kwargs)
