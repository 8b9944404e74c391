"""IANA time-zone helpers: validation, wall clocks and DST-safe wall-time-to-instant conversion."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

UTC = "UTC"


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError when there is no such zone."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone must be a non-empty IANA name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found, not a normalised key, a directory, not TZif
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as 'Asia/Shanghai')") from None


def is_valid(name: object) -> bool:
    try:
        zone(name)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def resolve(*names: str | None, default: str = UTC) -> str:
    """The first valid zone name among `names`, else `default` (which must itself be valid)."""
    for name in names:
        if name and is_valid(name):
            return name
    zone(default)
    return default


def wall(ts_ms: int, tz: ZoneInfo) -> dt.datetime:
    """The naive local date and time that a clock in `tz` shows at epoch `ts_ms`."""
    seconds, millis = divmod(ts_ms, 1000)
    local = dt.datetime.fromtimestamp(seconds, tz).replace(tzinfo=None)
    return local + dt.timedelta(milliseconds=millis)


def _wall_s(ts_s: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_s, tz).replace(tzinfo=None)


def instants(local: dt.datetime, tz: ZoneInfo) -> tuple[int, ...]:
    """Epoch seconds at which a clock in `tz` shows the naive time `local` (whole seconds), earliest first.

    One instant normally; two in a fall-back overlap (the time repeats); for a time skipped by a
    spring-forward gap, the one instant at which the clock jumps past it (e.g. 02:30 on
    2026-03-08 in America/New_York maps to 03:00 EDT, 07:00Z).
    """
    early = int(local.replace(tzinfo=tz, fold=0).timestamp())
    late = int(local.replace(tzinfo=tz, fold=1).timestamp())
    if _wall_s(early, tz) == local:
        return (early,) if early == late else tuple(sorted({early, late}))
    # In a gap fold=1 uses the offset after the jump (an instant before it), fold=0 the one before.
    lo, hi = min(early, late), max(early, late)
    while hi - lo > 1:  # invariant: wall(lo) < local <= wall(hi)
        mid = (lo + hi) // 2
        if _wall_s(mid, tz) < local:
            lo = mid
        else:
            hi = mid
    return (hi,)


def utc_offset_s(ts_s: int, tz: ZoneInfo) -> int:
    offset = dt.datetime.fromtimestamp(ts_s, tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def local_day(ts_ms: int, tz: str) -> str:
    """The "YYYY-MM-DD" date a clock in the IANA zone `tz` shows at epoch `ts_ms`."""
    return wall(ts_ms, zone(tz)).date().isoformat()
