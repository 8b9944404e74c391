"""`pushpipe diagnose`: one pin's or one message's story, with plain-words reasons. (Being written.)"""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings

Story = dict[str, Any]


class NotFound(LookupError):
    """Nothing known of this pin or message in this app; the message says so in plain words."""


def pin_story(settings: Settings, app_id: str, pin: str) -> Story:
    """The pin's devices, preferences, caps, quiet hours, recent pushes with their lifecycles, and `verdict`
    (plain sentences). ValueError for a malformed app id or pin; NotFound when the app knows nothing of it."""
    raise NotImplementedError


def message_story(settings: Settings, app_id: str, msg_id: str) -> Story:
    """The message's hops with timings against their SLA, outcome counts, failures by reason, and `verdict`."""
    raise NotImplementedError
