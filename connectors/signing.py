"""Digests, request signatures and form encoding shared by the China vendors and their simulators.

Each vendor's signature formula (OPPO, vivo, Meizu, Umeng) lives next to its adapter; this module
holds only the primitives, so a formula reads as one line there. All digests are lowercase hex of
the UTF-8 bytes, as the vendors' SDKs compute them.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sorted_params(params: Mapping[str, str]) -> str:
    """"k1=v1k2=v2…" in ascending key order, raw (not URL-encoded), as Meizu signs."""
    return "".join(f"{k}={params[k]}" for k in sorted(params))


def compact_json(obj: Any) -> str:
    """JSON without spaces and with non-ASCII kept, the form vendors sign and count lengths on."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def form_body(fields: Mapping[str, str]) -> bytes:
    """application/x-www-form-urlencoded (UTF-8) body."""
    return urlencode(fields).encode()


def parse_form(body: bytes) -> dict[str, str]:
    """Decode a form body; a repeated key keeps its last value."""
    return dict(parse_qsl(body.decode(), keep_blank_values=True))
