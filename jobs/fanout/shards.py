"""Pure logic of the device shards that serve broadcasts, segments and explicit tokens.

Devices of an app are spread over keys.SHARDS keys (keys.shard_key), so a broadcast is one small record
per shard, expanded in parallel, never one giant record or one hot key.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pushpipe.jobs.fanout.apprules import VENDOR_NOT_ALLOWED, vendor_allowed
from pushpipe.jobs.fanout.devices import REMOVING

Record = dict[str, Any]
FROM_RECEIPTS = ("invalid_token", "switch_off")  # what the receipt gateway reports of a token
BLOCKING_FIELDS = ("opted_out_categories", "opted_out_channels", "unsubscribed")
SUMMARY_FIELDS = ("pin", "vendor", "platform", "environment", "brand", "model", "os_version", "app_version", "locale",
                  "fallback_token", "tags")


def select(devices: Iterable[tuple[str, Record]], request: Record) -> tuple[list[tuple[str, Record]], Counter[str]]:
    """The devices a broadcast or segment is sent to, and how many of the others in its segment are skipped, by reason."""
    segment = request["segment"] if request["target"] == "segment" else {}
    chosen: list[tuple[str, Record]] = []
    skipped: Counter[str] = Counter()
    for token, device in devices:
        if not matches(segment, device):
            continue
        if not device["enabled"]:
            skipped["switched_off"] += 1
        elif device["environment"] != request["environment"]:
            skipped[f"{device['environment']}_device"] += 1
        elif not vendor_allowed(request, device["vendor"]):
            skipped[VENDOR_NOT_ALLOWED] += 1
        else:
            chosen.append((token, device))
    return chosen, skipped


def summary_after(known: Record | None, event: Record) -> Record | None:
    """The shard's entry for the event's token afterwards; None removes it.

    A removal naming another pin than the token's current one (or none, for a token now bound to one) is
    stale (the token moved) and ignored.
    """
    if event["kind"] in REMOVING:
        return known if known and known["pin"] != (event["pin"] or "") else None
    if event["kind"] in ("switch_on", "switch_off"):
        return {**known, "enabled": event["kind"] == "switch_on"} if known else None
    return {**(known or {"enabled": True}), **{f: event[f] or "" if f == "pin" else event[f] for f in SUMMARY_FIELDS}}


def moved_from(known: Record | None, event: Record) -> str | None:
    """The pin a bind takes the token away from ("" from being anonymous), if it was bound to another."""
    if event["kind"] in ("bind", "report") and known and known["pin"] != (event["pin"] or ""):
        return str(known["pin"])
    return None


def receipt_owner(known: Record | None, event: Record) -> str | None:
    """The pin of a token that a receipt reports dead or switched off (the gateway knows only the token):
    the shard tells that pin, through device.feedback. None when the event names its pin, or no pin has the token."""
    if event["pin"] or event["kind"] not in FROM_RECEIPTS or not known or not known["pin"]:
        return None
    return str(known["pin"])


def blocking_preferences(prefs: Record) -> Record | None:
    """The part of a user's preferences that can block a broadcast; None when nothing would."""
    kept = {key: prefs[key] for key in BLOCKING_FIELDS if prefs.get(key)}
    return kept or None


def matches(segment: dict[str, str], device: Record) -> bool:
    """Segment filters: platform, brand, vendor, app_version (minimum, dotted), tag."""
    for key, wanted in segment.items():
        if key == "tag":
            if wanted not in device.get("tags", ()):  # a pin's device reported before tags were kept has none
                return False
        elif key == "app_version":
            if _version(device["app_version"]) < _version(wanted):
                return False
        elif str(device.get(key, "")).lower() != wanted.lower():
            return False
    return True


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())
