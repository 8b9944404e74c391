"""Per-vendor payload and text limits, checked at fan-out before anything is dispatched.

Sizes are conservative estimates of what each adapter in connectors/ sends: JSON (UTF-8, non-ASCII
kept) of the title, body and data as that vendor counts them, plus a fixed vendor overhead for the
envelope, which assumes msg_id and category of at most 64 and 32 characters. Title and body limits
are in characters, or in vivo's "width" (a CJK character counts 2). Values marked UNCONFIRMED in
VENDORS.md (vivo, Honor, Umeng sizes) are defaults: pass your own table to payload_problems().
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

Measure = Literal["chars", "width"]


@dataclass(frozen=True)
class PayloadLimit:
    """What one vendor accepts.

    max_bytes        estimated encoded payload (None: no known byte limit)
    title_max        title length (None: no limit); body_max likewise; measured by `measure`
    data_max_chars   characters of the data JSON, with msg_id (vivo clientCustomMap)
    title_copies     times the title counts against max_bytes (Honor sends it twice, Umeng as ticker too)
    body_copies      times the body counts against max_bytes
    data_as_string   data travels as a JSON string inside the JSON (Huawei, Honor): quotes are escaped
    overhead_bytes   envelope bytes on top: keys, msg_id, category, ttl, click action
    needs_title      the vendor shows only notifications with a title; needs_body likewise
    body_needs_title a body without a title is refused (Xiaomi; data-only messages are fine)
    reserved_data    data keys the vendor refuses: exact names and lower-cased prefixes (FCM)
    """

    max_bytes: int | None = None
    title_max: int | None = None
    body_max: int | None = None
    data_max_chars: int | None = None
    measure: Measure = "chars"
    title_copies: int = 1
    body_copies: int = 1
    data_as_string: bool = False
    overhead_bytes: int = 256
    needs_title: bool = False
    needs_body: bool = False
    body_needs_title: bool = False
    reserved_data: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())


PAYLOAD_LIMITS: Mapping[str, PayloadLimit] = MappingProxyType({
    "apns": PayloadLimit(max_bytes=4096, overhead_bytes=256),
    "fcm": PayloadLimit(max_bytes=4096, overhead_bytes=192,  # FCM counts notification + data only
                        reserved_data=(frozenset({"from", "notification", "message_type"}), ("google", "gcm"))),
    "hms": PayloadLimit(max_bytes=4096, data_as_string=True, overhead_bytes=384),
    "honor": PayloadLimit(max_bytes=4096, title_copies=2, body_copies=2, data_as_string=True,
                          overhead_bytes=384),  # 4096 UNCONFIRMED
    # Xiaomi's 4 KB is the payload field (data + msg_id); title and description are separate fields.
    "xiaomi": PayloadLimit(max_bytes=4095, title_max=49, body_max=127, title_copies=0, body_copies=0,
                           overhead_bytes=128, body_needs_title=True),
    "oppo": PayloadLimit(title_max=50, body_max=200, needs_title=True),
    "vivo": PayloadLimit(title_max=40, body_max=100, measure="width", data_max_chars=1024,
                         needs_title=True),  # UNCONFIRMED
    "meizu": PayloadLimit(title_max=32, body_max=100, needs_title=True, needs_body=True),
    "umeng": PayloadLimit(max_bytes=4096, title_copies=2, overhead_bytes=256, needs_title=True),  # UNCONFIRMED
})
MSG_ID_DATA_CHARS = len(',"msg_id":""') + 64  # what the adapters add to data, with a 64-character msg_id


def width(text: str) -> int:
    """vivo's length: a CJK character counts 2, anything else 1 (as connectors.vivo.width)."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" else 1
               for ch in text)


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
