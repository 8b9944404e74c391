"""Per-vendor payload and text limits, checked at fan-out before anything is dispatched.

Sizes are conservative estimates of what each adapter in connectors/ sends: JSON (UTF-8, non-ASCII
kept) of the title, body and data as that vendor counts them, plus a fixed vendor overhead for the
envelope, which assumes msg_id and category of at most 64 and 32 characters. Title and body limits
are in characters, or in vivo's "width" (a CJK character counts 2). The limits are each vendor's
`SPEC.payload` (connectors.limits.PayloadLimit, next to its adapter). Values marked UNCONFIRMED in
VENDORS.md (vivo, Honor, Umeng sizes) are defaults: pass your own table to payload_problems().
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pushpipe.connectors.limits import Measure, PayloadLimit, width
from pushpipe.connectors.registry import SPECS

# vendor name -> its limits, as declared in each connectors/<vendor>.py SPEC
PAYLOAD_LIMITS: Mapping[str, PayloadLimit] = MappingProxyType({v.value: s.payload for v, s in SPECS.items()})
MSG_ID_DATA_CHARS = len(',"msg_id":""') + 64  # what the adapters add to data, with a 64-character msg_id


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text_bytes(text: str) -> int:
    return len(_json(text).encode()) - 2  # escaped content, without the quotes (in the overhead)


def estimated_bytes(notification: Mapping[str, Any], limit: PayloadLimit) -> int:
    """Conservative size of the vendor payload the adapters would build for `notification`."""
    data = {str(k): str(v) for k, v in (notification.get("data") or {}).items()}
    data_json = _json(data)
    data_bytes = len((_json(data_json) if limit.data_as_string else data_json).encode())
    return (limit.overhead_bytes + data_bytes + limit.title_copies * _text_bytes(notification.get("title") or "")
            + limit.body_copies * _text_bytes(notification.get("body") or ""))


def _length(text: str, measure: Measure) -> int:
    return width(text) if measure == "width" else len(text)


def payload_problems(notification: Mapping[str, Any], vendor: str,
                     limits: Mapping[str, PayloadLimit] = PAYLOAD_LIMITS) -> list[str]:
    """Human-readable reasons why `vendor` would refuse `notification`; [] when it fits.

    `notification` is a Notification record (title, body, data) after template rendering.
    An unknown vendor is a problem too: nothing is known to fit it.
    """
    limit = limits.get(vendor)
    if limit is None:
        return [f"no payload limits known for vendor {vendor!r}"]
    title, body = notification.get("title") or "", notification.get("body") or ""
    problems = []
    if limit.needs_title and not title:
        problems.append(f"{vendor} needs a title")
    if limit.needs_body and not body:
        problems.append(f"{vendor} needs a body")
    if limit.body_needs_title and body and not title:
        problems.append(f"{vendor} needs a title when there is a body")
    names, prefixes = limit.reserved_data
    for key in sorted(notification.get("data") or {}):
        if key in names or (prefixes and key.lower().startswith(prefixes)):
            problems.append(f"data key {key!r} is reserved by {vendor}")
    unit = "width (CJK counts 2)" if limit.measure == "width" else "characters"
    for part, text, most in (("title", title, limit.title_max), ("body", body, limit.body_max)):
        if most is not None and (size := _length(text, limit.measure)) > most:
            problems.append(f"{part} is {size} {unit}, over {vendor}'s {most}")
    if limit.data_max_chars is not None:
        size = len(_json({str(k): str(v) for k, v in (notification.get("data") or {}).items()})) + MSG_ID_DATA_CHARS
        if size > limit.data_max_chars:
            problems.append(f"data is about {size} characters of JSON with msg_id, over {vendor}'s {limit.data_max_chars}")
    if limit.max_bytes is not None and (size := estimated_bytes(notification, limit)) > limit.max_bytes:
        problems.append(f"payload is about {size} bytes encoded, over {vendor}'s {limit.max_bytes}")
    return problems
