"""`pushpipe test-push`: a push to one device or all of a pin's devices, followed to the vendor's answer and
the receipt. (Being written.)"""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings


def send(settings: Settings, app_id: str, pin: str | None = None, token: str | None = None) -> dict[str, Any]:
    """Produces the test push; returns {"app_id", "msg_id", "targets": [tokens]}. ValueError for bad input."""
    raise NotImplementedError


def progress(settings: Settings, app_id: str, msg_id: str) -> dict[str, Any]:
    """Where the test push is now: {"msg_id", "done": bool, "deliveries": [{token, vendor, outcome, code, reason,
    sent_at, completed_at, delivered_at, opened_at, receipt}]}."""
    raise NotImplementedError
