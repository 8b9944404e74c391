"""HTTP pieces every vendor adapter shares: TLS verification, Retry-After, transport failures.

Kept separate from any one vendor so adapters reuse them instead of copying them.
"""
from __future__ import annotations

import json
import ssl
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pushpipe.connectors.base import Outcome, TokenResult


def ssl_context(verify: str | bool) -> ssl.SSLContext:
    """A TLS context from a CA bundle path, True (system CAs) or False (no verification)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx `verify`: a CA bundle path, True (httpx's CAs) or False."""
    return ssl_context(verify) if isinstance(verify, str) else verify


def new_client(verify: str | bool, timeout_s: float, *, http2: bool = True) -> httpx.AsyncClient:
    """One long-lived client per adapter (created in open(), closed in aclose())."""
    return httpx.AsyncClient(http2=http2, verify=ssl_verify(verify), timeout=httpx.Timeout(timeout_s))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None if absent or unparsable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def failure_code(exc: Exception) -> str:
    return "timeout" if isinstance(exc, (httpx.TimeoutException, TimeoutError)) else "transport"


def failure_reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def transport_failure(token: str, exc: Exception) -> TokenResult:
    """A connect/TLS/reset/timeout error: the vendor may be fine, so it is transient."""
    return TokenResult(token, Outcome.UNAVAILABLE, failure_code(exc), failure_reason(exc))


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is empty, not JSON or not an object."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
