"""Vendor message classes and per-device daily vendor quotas (VENDORS.md section 7).

China vendors split messages into service ("private": unlimited once approved) and marketing
("public": capped per device per day, usually 5 for news apps and 2 for others). An app that has
not registered message classes with Xiaomi gets Xiaomi's unclassified cap (1 per device per day)
on every message, service included. Vendors without a known cap (apns, fcm, meizu, umeng) are not
counted; Meizu's per-device caps exist (codes 110019/110051/110011) but their values are UNCONFIRMED:
configure them in `marketing_per_day` when known.

Quota state is a dict {"YYYY-MM-DD|token": count} per (app, pin), pruned to two days. The day is
the vendor's day: caps reset at midnight in `VendorQuota.reset_tz` (China time; UNCONFIRMED).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from pushpipe.connectors.registry import SPECS
from pushpipe.jobs.policy import zones
from pushpipe.jobs.policy.counters import take

MessageClass = Literal["service", "marketing"]
SERVICE: MessageClass = "service"
MARKETING: MessageClass = "marketing"
MESSAGE_CLASSES = (SERVICE, MARKETING)

DEFAULT_CLASSES: Mapping[str, MessageClass] = MappingProxyType(
    {category: SERVICE for category in ("transactional", "account", "security", "system")})

APP_KINDS = ("other", "news")
QUOTA_VENDORS = tuple(v.value for v, s in SPECS.items() if s.daily_quota)  # hms, honor, xiaomi, oppo, vivo
MARKETING_PER_DAY: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "other": MappingProxyType({vendor: 2 for vendor in QUOTA_VENDORS}),
    "news": MappingProxyType({vendor: 5 for vendor in QUOTA_VENDORS}),
})
UNCLASSIFIED_PER_DAY: Mapping[str, int] = MappingProxyType(
    {v.value: s.unclassified_per_day for v, s in SPECS.items() if s.unclassified_per_day is not None})  # xiaomi 1
VENDOR_DAY_TZ = "Asia/Shanghai"


def normalise_category(category: str | None) -> str:
    return (category or "").strip().lower()


def message_class(category: str | None, classes: Mapping[str, str] = DEFAULT_CLASSES) -> MessageClass:
    """"service" for categories mapped to it (default: transactional, account, security, system), else "marketing".

    Unknown and empty categories are marketing: the class with more restrictions is the safe guess.
    """
    return SERVICE if classes.get(normalise_category(category)) == SERVICE else MARKETING


def class_map(classes: Mapping[str, str]) -> dict[str, MessageClass]:
    """A validated, normalised copy of a category -> class mapping (for configs)."""
    checked: dict[str, MessageClass] = {}
    for category, cls in dict(classes).items():
        name = normalise_category(category)
        if not name:
            raise ValueError("classified category must be a non-empty string")
        if cls not in MESSAGE_CLASSES:
            raise ValueError(f"class of {name!r} must be one of {MESSAGE_CLASSES}, got {cls!r}")
        checked[name] = cls
    return checked


def _caps(caps: Mapping[str, int], what: str) -> dict[str, int]:
    checked = {}
    for vendor, cap in dict(caps).items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"{what} for {vendor!r} must be an int >= 0, got {cap!r}")
        checked[str(vendor).lower()] = cap
    return checked


@dataclass(frozen=True)
class VendorQuota:
    """Per-device daily caps by vendor.

    app_kind              "other" (default caps 2) or "news" (5): picks the default marketing caps
    marketing_per_day     vendor -> marketing messages per device per day; None: defaults for app_kind
    unclassified_vendors  vendors with which the app has NOT registered message classes (e.g. Xiaomi
                          without a channel_id): every message there counts against unclassified_per_day
    unclassified_per_day  vendor -> cap for unclassified messages (default xiaomi 1)
    reset_tz              zone whose midnight starts the vendors' day (UNCONFIRMED, default Asia/Shanghai)
    """

    app_kind: str = "other"
    marketing_per_day: Mapping[str, int] | None = None
    unclassified_vendors: frozenset[str] = frozenset()
    unclassified_per_day: Mapping[str, int] = field(default_factory=lambda: dict(UNCLASSIFIED_PER_DAY))
    reset_tz: str = VENDOR_DAY_TZ

    def __post_init__(self) -> None:
        if self.app_kind not in APP_KINDS:
            raise ValueError(f"app_kind must be one of {APP_KINDS}, got {self.app_kind!r}")
        marketing = MARKETING_PER_DAY[self.app_kind] if self.marketing_per_day is None else self.marketing_per_day
        object.__setattr__(self, "marketing_per_day", _caps(marketing, "marketing_per_day"))
        object.__setattr__(self, "unclassified_per_day", _caps(self.unclassified_per_day, "unclassified_per_day"))
        unclassified = frozenset(v.lower() for v in self.unclassified_vendors)
        missing = sorted(unclassified - set(self.unclassified_per_day))
        if missing:
            raise ValueError(f"unclassified vendors {missing} have no cap in unclassified_per_day")
        object.__setattr__(self, "unclassified_vendors", unclassified)
        zones.zone(self.reset_tz)

    def cap(self, vendor: str, cls: MessageClass) -> int | None:
        """Messages of class `cls` allowed per device per day on `vendor`; None = not capped (not counted)."""
        vendor = vendor.lower()
        if vendor in self.unclassified_vendors:
            return self.unclassified_per_day[vendor]
        assert self.marketing_per_day is not None  # set by __post_init__
        return self.marketing_per_day.get(vendor) if cls == MARKETING else None

    def day(self, now_ms: int) -> str:
        """The vendors' current day at `now_ms`, for vendor_quota_check()."""
        return zones.local_day(now_ms, self.reset_tz)


def vendor_quota_check(state: Mapping[str, int], vendor: str, token: str, local_day: str,
                       message_class: MessageClass, config: VendorQuota) -> tuple[bool, dict[str, int]]:
    """(allowed, new state) for one message to one device; counted only when allowed and capped."""
    return take(state, local_day, token, config.cap(vendor, message_class))
