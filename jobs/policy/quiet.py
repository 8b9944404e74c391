"""Quiet hours in the user's time zone: when a non-urgent message must wait.

Windows are wall-clock times "HH:MM" (start inclusive, end exclusive); start > end crosses midnight
(22:00-08:00) and start == end is an empty window. Wall-clock rules at DST changes:
- an end time skipped by a spring-forward gap ends the window when the clock jumps past it;
- in a repeated (fall-back) hour a wall time is quiet in both passes, and the window ends at the
  next instant the clock shows the end time.
The caller resolves the zone: an invalid or missing user zone becomes the app default ("UTC").
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from pushpipe.jobs.policy import zones
from pushpipe.jobs.policy.classify import DEFAULT_CLASSES, SERVICE, message_class

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_hhmm(text: str) -> dt.time:
    """"HH:MM" (00:00-23:59, zero-padded) as a time; ValueError otherwise."""
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"time of day must be 'HH:MM' between 00:00 and 23:59, got {text!r}")
    return dt.time(int(match[1]), int(match[2]))


def defer_until(ts_ms: int, tz: str, quiet_start: str | None, quiet_end: str | None) -> int | None:
    """Epoch ms at which the quiet window containing `ts_ms` ends, or None when `ts_ms` is outside it.

    No window (either bound None, or start == end) never defers. ValueError for an unknown zone or bad time.
    """
    if quiet_start is None or quiet_end is None:
        return None
    start, end = parse_hhmm(quiet_start), parse_hhmm(quiet_end)
    tzinfo = zones.zone(tz)
    if start == end:
        return None
    local = zones.wall(ts_ms, tzinfo)
    now = local.time()
    if start < end:
        inside, end_day = start <= now < end, local.date()
    else:
        inside = now >= start or now < end
        end_day = local.date() + dt.timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    ends = [s * 1000 for s in zones.instants(dt.datetime.combine(end_day, end), tzinfo) if s * 1000 > ts_ms]
    return ends[0] if ends else None


def is_urgent(request: Mapping[str, Any], classes: Mapping[str, str] = DEFAULT_CLASSES) -> bool:
    """High priority and service-class categories (transactional, ...) bypass quiet hours."""
    return request.get("priority") == "high" or message_class(request.get("category"), classes) == SERVICE
