"""Pure expansion of one request for one pin: policy, environment isolation, the app's vendors, templates, payload limits.

`expand_for_pin` returns what the fan-out emits: vendor groups to batch (each with the rendered
notification) and per-token outcomes that are not sent (suppressed, rejected), each with its reason,
plus the pin's new state, or a deferral time when quiet hours hold the request back.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pushpipe.jobs.fanout.apprules import VENDOR_NOT_ALLOWED, vendor_allowed
from pushpipe.jobs.fanout.devices import Target
from pushpipe.jobs.fanout.placement import GroupKey, Placement
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.policy.decide import Defer, PolicyConfig, Send, Suppress, decide, filter_devices
from pushpipe.jobs.policy.templates import TemplateStore
from pushpipe.schemas import profiles

Record = dict[str, Any]
TEST_TO_PRODUCTION = "test_push_to_production_device"
SWITCHED_OFF = "switched_off"  # a pin's device with notifications off: not sent to, and said so


@dataclass
class Expansion:
    state: Record  # the pin's state after this request
    groups: dict[GroupKey, tuple[Record, list[Target]]] = field(default_factory=dict)  # see Placement
    not_sent: list[Unsent] = field(default_factory=list)
    defer_until: int | None = None
    suppressed: str | None = None  # the whole request for this pin, with this reason


def new_pin_state() -> Record:
    return {"devices": {}, "prefs": {}, "caps": {}, "vendor_quota": {}}


def expand_for_pin(request: Record, pin: str, state: Record, now_ms: int, config: PolicyConfig,
                   templates: TemplateStore, only: Collection[str] | None = None) -> Expansion:
    """With `only`, the request reaches those of the pin's devices alone (a broadcast's audience), and what
    suppresses the pin is an outcome of each of them; policy counts (caps, vendor quotas) are the pin's whole
    history either way."""
    devices = state["devices"] if only is None else {t: d for t, d in state["devices"].items() if t in only}
    result = Expansion(state)
    if request["environment"] == "test":  # test apps reach whitelisted (test) devices only
        result.not_sent += [Unsent(t, "suppressed", TEST_TO_PRODUCTION) for t, d in sorted(devices.items())
                            if d["environment"] != "test"]
    barred = sorted(t for t, d in devices.items()  # devices of a vendor the app may not use: not sent to, and said so
                    if d.get("environment", "production") == request["environment"] and not vendor_allowed(request, d.get("vendor", "")))
    result.not_sent += [Unsent(t, "suppressed", VENDOR_NOT_ALLOWED) for t in barred]
    devices = {t: d for t, d in devices.items() if t not in barred} if barred else devices
    switched_off = [Unsent(t, "suppressed", SWITCHED_OFF) for t, d in sorted(devices.items())
                    if not d.get("enabled", True) and d.get("environment", "production") == request["environment"]]
    decision = decide(request, state if only is None and not barred else {**state, "devices": devices}, now_ms, config)
    if isinstance(decision, Suppress) and decision.reason == "no_devices" and (switched_off or barred):
        result.not_sent += switched_off  # every device of the pin is switched off or barred: each says so
        return result
    if isinstance(decision, Defer):
        result.defer_until = decision.until_ms
        return result
    if isinstance(decision, Suppress):
        if only is None or not devices:
            result.suppressed = decision.reason
        else:  # a broadcast addresses devices: each of the pin's in its audience has the outcome
            result.not_sent += [Unsent(t, "suppressed", decision.reason) for t in sorted(devices)]
        return result
    assert isinstance(decision, Send)
    allowed, blocked, quota = filter_devices(request, state["devices"], state["vendor_quota"], now_ms, config,
                                             prefs=state["prefs"], only=set(devices) if barred else only)
    result.not_sent += [Unsent(t, "suppressed", reason) for t, reason in sorted(blocked.items())] + switched_off
    if not allowed:
        if only is None or not blocked:
            result.suppressed = "all devices suppressed" if blocked else "no_devices"
        return result
    result.state = {**state, "caps": decision.new_state["caps"], "vendor_quota": quota}
    placement = Placement(request, templates)
    for token in allowed:
        device = devices[token]
        target = (token, pin, device.get("fallback_token") or "", profiles.encode(device))
        why_not = placement.place(target, device["vendor"], device.get("locale") or "")
        if why_not:
            result.not_sent.append(Unsent(token, "rejected", why_not))
    result.groups = placement.groups
    return result
