"""Plain words for support staff: why a push to a device was or was not delivered.

A delivery is an Elasticsearch delivery document (sinks/elastic.py): its dispatch `outcome`, `code` and
`reason`, and what the receipts said (`delivered_at`, `opened_at`, `receipt`, `receipt_code`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

Delivery = Mapping[str, Any]

# fan-out's reasons (jobs/policy, jobs/fanout), by their code (the reason up to its first ':')
SUPPRESSED = {
    "no_devices": "the user had no enabled device in this environment",
    "no_devices_matched": "no device of the app matched the broadcast's segment",
    "unsubscribed": "the user unsubscribed from marketing pushes",
    "opted_out": "the user opted out ({detail})",
    "quiet_hours": "it was held by the user's quiet hours and would have expired before they ended",
    "frequency_cap": "the user's daily cap for {detail} pushes was already used up",
    "vendor_quota": "the vendor's daily quota of marketing pushes for this device was used up ({detail})",
    "duplicate": "a request with the same msg id had already been taken (a resend within the dedup window)",
    "test_push_to_production_device": "a test app's push may not reach a production device",
    "switched_off": "the device has notifications switched off (or is disabled), so it was not sent to",
    "unknown_token": "no device with this token is registered for the app",
    "test_device": "a production push does not go to a test device",
    "production_device": "a test push does not go to a production device",
    "vendor_not_allowed": "the app may not use this device's vendor (its vendors in the app registry: `pushpipe app list`)",
}
# the dispatch job's outcomes (jobs/sender.py), then the receipts' states (jobs/lifecycle.py)
FAILED = {
    "invalid_token": "the vendor said the token is no longer valid ({code}); the device was removed",
    "throttled": "the vendor kept throttling the app (429) until the retries ran out ({code})",
    "unavailable": "the vendor was unavailable ({code}){breaker}",
    "rejected": "the vendor rejected it: {reason}",
    "expired": "it expired (its TTL passed) before it could be sent",
}
RECEIPTS = {
    "switched_off": "the vendor accepted it, but the device has notifications switched off (receipt {code})",
    "invalid_target": "the vendor accepted it, then reported the token dead (receipt {code})",
    "undelivered": "the vendor accepted it but could not deliver it (receipt {code})",
}


def when(ms: int | None, tz: dt.tzinfo = dt.UTC, precise: bool = False) -> str:
    """An epoch-ms time as a person reads it, in `tz` (`precise`: to the millisecond)."""
    if not ms:
        return "an unknown time"
    shown = dt.datetime.fromtimestamp(ms / 1000, tz)
    return shown.strftime("%Y-%m-%d %H:%M:%S") + (f".{ms % 1000:03d}" if precise else "") + shown.strftime(" %Z")


def why(d: Delivery) -> str:
    """One sentence: what happened to this delivery, and why when it was not delivered."""
    outcome, code, reason = d.get("outcome", ""), d.get("code") or "", d.get("reason") or ""
    if outcome == "suppressed":
        head, _, detail = reason.partition(":")
        text = SUPPRESSED.get(head or code, "fan-out held it back ({reason})")
        return "Not sent: " + text.format(detail=detail.replace(":", " ") or head, reason=reason or code) + "."
    if outcome in FAILED:
        breaker = ": every exit's circuit breaker was open" if code == "circuit_open" else ""
        return "Not delivered: " + FAILED[outcome].format(code=code or "no code", reason=reason or code, breaker=breaker) + "."
    if outcome != "accepted":
        return f"Unknown outcome {outcome!r} ({code} {reason})."
    return _after_accepted(d)


def _after_accepted(d: Delivery) -> str:
    if d.get("opened_at"):
        return f"Delivered at {when(d.get('delivered_at') or d['opened_at'])} and opened at {when(d['opened_at'])}."
    if d.get("delivered_at"):
        return f"Delivered at {when(d['delivered_at'])}; not opened (yet)."
    receipt = d.get("receipt")
    if receipt in RECEIPTS:
        return "Not delivered: " + RECEIPTS[receipt].format(code=d.get("receipt_code") or "without a code") + "."
    vendor = d.get("vendor", "")
    silent = " (APNs sends no receipts: only an app with a Notification Service Extension acknowledges)" if vendor == "apns" else ""
    return (f"Accepted by {vendor} at {when(d.get('completed_at'))}; no delivery receipt yet: the device may be offline"
            f"{silent}.")


DELIVERY_FIELDS = ("token", "vendor", "outcome", "code", "reason", "requested_at", "sent_at", "completed_at", "delivered_at",
                   "opened_at", "receipt", "receipt_code")


def delivery_view(d: Delivery) -> dict[str, Any]:
    """What a story shows of one delivery: its outcome, the lifecycle's times, and why."""
    return {**{k: d.get(k) for k in DELIVERY_FIELDS}, "why": why(d)}


def delivered(d: Delivery) -> bool:
    return bool(d.get("delivered_at") or d.get("opened_at"))
