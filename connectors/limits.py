"""What each vendor accepts, as the fan-out checks it before dispatch (jobs/policy/limits.py).

Each vendor module declares its `PayloadLimit` in its SPEC, from the same constants its adapter
checks, so the pre-dispatch check and the adapter cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


def width(text: str) -> int:
    """vivo's length: a CJK character counts 2, anything else 1."""
    return sum(2 if "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" else 1
               for ch in text)
