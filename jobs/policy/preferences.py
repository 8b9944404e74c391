"""One user's notification preferences, a small serialisable dict kept in keyed state per (app, pin).

    {"opted_out_categories": ["marketing"], "opted_out_channels": ["xiaomi"], "unsubscribed": False,
     "timezone": "Asia/Shanghai" | None, "quiet_start": "22:00" | None, "quiet_end": "08:00" | None,
     "updated_at": <ts of the last change>, "history": [<last HISTORY_LIMIT changes, oldest first>]}

Blocking rules (blocked_reason), in this order:
1. unsubscribed blocks marketing-class categories only: service messages (transactional, account,
   security, system by default) still reach an unsubscribed user;
2. a category opt-out blocks that category unless it is service-class: opting out of
   "transactional" is recorded but has no effect;
3. a channel opt-out blocks everything on that channel, service included ("push" = every vendor):
   it is about the medium, and the sender can reach the user another way.
Timezone and quiet hours set to None mean "use the device's zone / the app default".
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pushpipe.jobs.policy import zones
from pushpipe.jobs.policy.classify import DEFAULT_CLASSES, MARKETING, message_class, normalise_category
from pushpipe.jobs.policy.quiet import parse_hhmm

Preferences = dict[str, Any]
HISTORY_LIMIT = 20
ALL_CHANNELS = "push"
KINDS = ("opt_out", "opt_in", "unsubscribe", "resubscribe", "set_timezone", "set_quiet_hours")


class InvalidPreference(ValueError):
    """A preference event that cannot be applied; the message is the reason (for the DLQ)."""


def new_preferences() -> Preferences:
    """The preferences of a user who never changed anything."""
    return {"opted_out_categories": [], "opted_out_channels": [], "unsubscribed": False, "timezone": None,
            "quiet_start": None, "quiet_end": None, "updated_at": 0, "history": []}


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    return value.strip().lower() if isinstance(value, str) else ""


def _opt(prefs: Preferences, event: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    category, channel = normalise_category(event.get("category")), _text(event, "channel")
    if bool(category) == bool(channel):
        raise InvalidPreference(f"{event['kind']} needs exactly one of category or channel")
    field, value = ("opted_out_categories", category) if category else ("opted_out_channels", channel)
    values = set(prefs[field])
    if event["kind"] == "opt_out":
        values.add(value)
    else:
        values.discard(value)
    detail = {"category": category} if category else {"channel": channel}
    return {field: sorted(values)}, detail


def _subscription(prefs: Preferences, event: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"unsubscribed": event["kind"] == "unsubscribe"}, {}


def _timezone(prefs: Preferences, event: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    tz = event.get("timezone") or None
    if tz is not None and not zones.is_valid(tz):
        raise InvalidPreference(f"unknown time zone {tz!r} (expected an IANA name such as 'Europe/Berlin')")
    return {"timezone": tz}, {"timezone": tz}


def _quiet_hours(prefs: Preferences, event: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    start, end = event.get("quiet_start") or None, event.get("quiet_end") or None
    if (start is None) != (end is None):
        raise InvalidPreference("set_quiet_hours needs both quiet_start and quiet_end, or neither to clear them")
    for value in (start, end):
        if value is not None:
            try:
                parse_hhmm(value)
            except ValueError as bad:
                raise InvalidPreference(str(bad)) from None
    change = {"quiet_start": start, "quiet_end": end}
    return change, change


# What a setting (keys.preference_key) returns to when a tombstone deletes it: the event that undoes it.
_RESETS: dict[str, dict[str, Any]] = {
    "category": {"kind": "opt_in"}, "channel": {"kind": "opt_in"}, "subscription": {"kind": "resubscribe"},
    "timezone": {"kind": "set_timezone", "timezone": None},
    "quiet_hours": {"kind": "set_quiet_hours", "quiet_start": None, "quiet_end": None},
}


def reset_event(setting: str) -> dict[str, Any]:
    """The fields of the PreferenceEvent that returns `setting` ("category:<c>", "channel:<v>", "subscription",
    "timezone", "quiet_hours") to its default; InvalidPreference for any other."""
    name, _, value = setting.partition(":")
    if name not in _RESETS or bool(value) != (name in ("category", "channel")):
        raise InvalidPreference(f"no preference setting {setting!r} (keys are app|pin|<setting>, see keys.preference_key)")
    return {**_RESETS[name], **({name: value} if value else {})}


_CHANGES: dict[str, Callable[[Preferences, Mapping[str, Any]], tuple[dict[str, Any], dict[str, Any]]]] = {
    "opt_out": _opt, "opt_in": _opt, "unsubscribe": _subscription, "resubscribe": _subscription,
    "set_timezone": _timezone, "set_quiet_hours": _quiet_hours,
}


def apply_preference(prefs: Mapping[str, Any] | None, event: Mapping[str, Any]) -> Preferences:
    """The preferences after one event (a new dict; the input is not changed); InvalidPreference if it is bad.

    Events apply in arrival order; each is appended to the bounded history with its ts.
    """
    kind, ts = event.get("kind"), event.get("ts")
    if kind not in _CHANGES:
        raise InvalidPreference(f"unknown preference event kind {kind!r} (expected one of {KINDS})")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidPreference(f"ts must be epoch milliseconds (int), got {ts!r}")
    current = {**new_preferences(), **(prefs or {})}
    change, detail = _CHANGES[kind](current, event)
    history = [*current["history"], {"kind": kind, "ts": ts, **detail}][-HISTORY_LIMIT:]
    return {**current, **change, "updated_at": max(current["updated_at"], ts), "history": history}


def blocked_reason(prefs: Mapping[str, Any] | None, category: str | None, vendor: str | None,
                   classes: Mapping[str, str] = DEFAULT_CLASSES) -> str | None:
    """Why this user must not get a `category` message on `vendor` (None: not blocked).

    Reasons: "unsubscribed", "opted_out:category:<c>", "opted_out:channel:<v>" ("push" for all channels).
    `vendor` None checks only what applies to every channel.
    """
    prefs = prefs or {}
    name = normalise_category(category)
    marketing = message_class(name, classes) == MARKETING
    if marketing and prefs.get("unsubscribed"):
        return "unsubscribed"
    if marketing and name in prefs.get("opted_out_categories", ()):
        return f"opted_out:category:{name}"
    channels = prefs.get("opted_out_channels", ())
    if ALL_CHANNELS in channels:
        return f"opted_out:channel:{ALL_CHANNELS}"
    if vendor and vendor.lower() in channels:
        return f"opted_out:channel:{vendor.lower()}"
    return None
