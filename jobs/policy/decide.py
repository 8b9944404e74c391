"""The fan-out's entry points: decide() per (request, pin) and filter_devices() per device.

decide() applies, in order (the first that applies wins):
1. no enabled device in the request's environment -> Suppress("no_devices");
2. preferences: every such device blocked by blocked_reason() -> Suppress(<first device's reason>);
3. quiet hours, non-urgent requests only (is_urgent) -> Defer(<window end>, "quiet_hours"), or
   Suppress("quiet_hours:expires_before_end") when the request expires (created_at + ttl_s) by then;
4. frequency caps on the user's local day -> Suppress("frequency_cap:<category>"); else Send,
   with the send counted in the new caps state.
The user's zone is the preference, else the most recently updated device's zone, else the app
default; quiet hours are the preference, else the app default.

Call order at fan-out: decide(); on Send call filter_devices() for the per-device channel opt-outs and
vendor quotas, and keep Send.new_state only when it allowed at least one token (otherwise nothing was
sent, and the caps state must not count it). On Defer, call decide() again at until_ms.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pushpipe.jobs.policy import zones
from pushpipe.jobs.policy.caps import CapConfig, check_and_count
from pushpipe.jobs.policy.classify import (
    DEFAULT_CLASSES,
    MARKETING,
    MessageClass,
    VendorQuota,
    class_map,
    message_class,
    normalise_category,
    vendor_quota_check,
)
from pushpipe.jobs.policy.counters import prune_days, what_of
from pushpipe.jobs.policy.preferences import blocked_reason
from pushpipe.jobs.policy.quiet import defer_until, is_urgent, parse_hhmm

State = dict[str, Any]
Devices = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class PolicyConfig:
    """App-level policy settings; validated on creation, picklable (plain containers only)."""

    caps: CapConfig = field(default_factory=CapConfig)
    default_tz: str = zones.UTC
    default_quiet: tuple[str, str] | None = None  # ("22:00", "08:00"); None: no quiet hours by default
    classes: Mapping[str, MessageClass] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    vendor_quota: VendorQuota = field(default_factory=VendorQuota)

    def __post_init__(self) -> None:
        zones.zone(self.default_tz)
        if self.default_quiet is not None:
            if len(self.default_quiet) != 2:
                raise ValueError(f"default_quiet must be (start, end) or None, got {self.default_quiet!r}")
            object.__setattr__(self, "default_quiet", tuple(self.default_quiet))
            for value in self.default_quiet:
                parse_hhmm(value)
        object.__setattr__(self, "classes", class_map(self.classes))


@dataclass(frozen=True)
class Send:
    new_state: State


@dataclass(frozen=True)
class Suppress:
    reason: str
    new_state: State


@dataclass(frozen=True)
class Defer:
    until_ms: int
    reason: str


Decision = Send | Suppress | Defer


def eligible_devices(devices: Devices, environment: str) -> dict[str, Mapping[str, Any]]:
    """The enabled devices of `environment`."""
    return {token: device for token, device in devices.items()
            if device.get("enabled", True) and device.get("environment", "production") == environment}


def effective_timezone(prefs: Mapping[str, Any], devices: Devices, default: str) -> str:
    """The user's zone: the preference, else the newest valid device zone, else `default`."""
    newest_first = sorted(devices.values(), key=lambda d: d.get("updated_at") or 0, reverse=True)
    return zones.resolve(prefs.get("timezone"), *(d.get("timezone") for d in newest_first), default=default)


def quiet_window(prefs: Mapping[str, Any], config: PolicyConfig) -> tuple[str | None, str | None]:
    if prefs.get("quiet_start") and prefs.get("quiet_end"):
        return prefs["quiet_start"], prefs["quiet_end"]
    return config.default_quiet or (None, None)


def expires_at(request: Mapping[str, Any]) -> int | None:
    created, ttl_s = request.get("created_at"), request.get("ttl_s")
    return created + ttl_s * 1000 if isinstance(created, int) and isinstance(ttl_s, int) else None


def decide(request: Mapping[str, Any], pin_state: Mapping[str, Any], now_ms: int, config: PolicyConfig) -> Decision:
    """Send, Suppress or Defer `request` for one pin; pin_state = {"prefs", "caps", "devices"} (not changed)."""
    state = dict(pin_state)
    prefs = state.get("prefs") or {}
    category = normalise_category(request.get("category"))
    devices = eligible_devices(state.get("devices") or {}, request.get("environment", "production"))
    if not devices:
        return Suppress("no_devices", state)
    reasons = [blocked_reason(prefs, category, devices[t].get("vendor"), config.classes) for t in sorted(devices)]
    if all(reasons):
        return Suppress(reasons[0] or "", state)
    tz = effective_timezone(prefs, devices, config.default_tz)
    if not is_urgent(request, config.classes):
        until = defer_until(now_ms, tz, *quiet_window(prefs, config))
        if until is not None:
            expiry = expires_at(request)
            if expiry is not None and until >= expiry:
                return Suppress("quiet_hours:expires_before_end", state)
            return Defer(until, "quiet_hours")
    allowed, caps = check_and_count(state.get("caps") or {}, category, zones.local_day(now_ms, tz), config.caps)
    state["caps"] = caps
    return Send(state) if allowed else Suppress(f"frequency_cap:{category}", state)


def per_user_policy_applies(request: Mapping[str, Any], config: PolicyConfig) -> bool:
    """Whether quiet hours, a daily cap or a vendor quota can hold `request` back from some user: a broadcast
    none of them can touch (urgent, uncapped, not counted by any vendor) needs no user's history."""
    if not is_urgent(request, config.classes) or config.caps.limit(request.get("category")) is not None:
        return True
    quota = config.vendor_quota
    return bool(quota.unclassified_vendors) or (message_class(request.get("category"), config.classes) == MARKETING
                                                and bool(quota.marketing_per_day))


def filter_devices(request: Mapping[str, Any], devices: Devices, vendor_state: Mapping[str, int], now_ms: int,
                   config: PolicyConfig, *, prefs: Mapping[str, Any] | None = None, only: Collection[str] | None = None,
                   ) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """(allowed tokens, {token: reason} suppressed, new vendor state) for the pin's eligible devices (those in
    `only`, when given: a broadcast's segment).

    With `prefs`, per-vendor channel opt-outs apply first ("opted_out:channel:<v>"); then the vendor's
    per-device daily quota ("vendor_quota:<vendor>:<marketing|service|unclassified>"), counted per
    allowed token on the vendors' day. State of tokens the pin no longer has is dropped.
    """
    quota = config.vendor_quota
    day, category = quota.day(now_ms), request.get("category")
    cls = message_class(category, config.classes)
    state = {key: n for key, n in prune_days(vendor_state, day).items() if what_of(key) in devices}
    allowed, suppressed = [], {}
    for token, device in sorted(eligible_devices(devices, request.get("environment", "production")).items()):
        if only is not None and token not in only:
            continue
        vendor = str(device.get("vendor", "")).lower()
        reason = blocked_reason(prefs, category, vendor, config.classes) if prefs is not None else None
        if reason is None:
            ok, state = vendor_quota_check(state, vendor, token, day, cls, quota)
            kind = "unclassified" if vendor in quota.unclassified_vendors else cls
            reason = None if ok else f"vendor_quota:{vendor}:{kind}"
        if reason is None:
            allowed.append(token)
        else:
            suppressed[token] = reason
    return allowed, suppressed, state
