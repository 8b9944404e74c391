"""Pure device-directory logic: the devices of one (app, pin), kept as Flink keyed state."""
from __future__ import annotations

from typing import Any

from pushpipe.schemas import keys

Device = dict[str, Any]
Devices = dict[str, Device]  # token -> device

REMOVING = {"unbind", "deregister", "invalid_token"}
SWITCH_HISTORY = 10  # notification switch changes kept per device, for diagnosis
DEVICE_FIELDS = ("vendor", "platform", "environment", "brand", "model", "os_version", "app_version", "locale", "timezone",
                 "fallback_token", "tags")


# A device a batch is sent to: (token, pin or "", the token to fall back to or "", its profile: schemas/profiles.py).
# A plain tuple, not a NamedTuple: a batch's 1,000 targets are pickled between operators, and a NamedTuple costs
# ~2 us more per target and hop (measured).
Target = tuple[str, str, str, str]


def apply_event(devices: Devices, event: dict[str, Any]) -> Devices:
    """The pin's devices after one DeviceEvent (a new dict; the input is not changed)."""
    devices = dict(devices)
    token, kind = event["token"], event["kind"]
    if event.get("previous_token"):
        devices.pop(event["previous_token"], None)  # token refresh replaces the old token
    if kind in REMOVING:
        devices.pop(token, None)
    elif kind in ("switch_on", "switch_off"):
        if token in devices:
            history = [*devices[token].get("switch_history", []), (event["ts"], kind, event.get("reason") or "")]
            devices[token] = {**devices[token], "enabled": kind == "switch_on", "switch_history": history[-SWITCH_HISTORY:]}
    else:  # bind, report
        known = devices.get(token, {"enabled": True})
        devices[token] = {**known, **{f: event[f] for f in DEVICE_FIELDS}, "updated_at": event["ts"]}
    return devices


def event_problem(event: dict[str, Any]) -> str | None:
    """Why a DeviceEvent cannot be taken (the reason for the DLQ), or None."""
    try:
        keys.check_app_id(event["app_id"])
        if event.get("pin"):  # none: an anonymous install, reached by broadcasts, segments and its token
            keys.check_pin(event["pin"])
        keys.check_token(event["token"])
        for field in ("previous_token", "fallback_token"):
            if event.get(field):
                keys.check_token(event[field], field)
    except keys.InvalidId as bad:
        return str(bad)
    return None
