"""Daily counters shared by frequency caps and vendor quotas: dicts keyed "YYYY-MM-DD|<what>"."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

SEP = "|"  # between the day and what is counted
KEEP_DAYS = 2


def parse_day(day: str) -> dt.date:
    try:
        return dt.date.fromisoformat(day)
    except (TypeError, ValueError):
        raise ValueError(f"day must be 'YYYY-MM-DD', got {day!r}") from None


def _is_day(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def prune_days(state: Mapping[str, int], day: str, keep_days: int = KEEP_DAYS) -> dict[str, int]:
    """A copy of `state` without days older than the last `keep_days` up to `day`.

    Later days are kept (a user who moved west is "behind" a count made earlier); malformed keys are dropped.
    """
    oldest = (parse_day(day) - dt.timedelta(days=keep_days - 1)).isoformat()
    return {key: count for key, count in state.items()
            if _is_day(key_day := key.split(SEP, 1)[0]) and key_day >= oldest}


def counted_key(day: str, what: str) -> str:
    """The key of one day's count of `what` (a category, a device token): "<day>|<what>"."""
    return f"{day}{SEP}{what}"


def what_of(key: str) -> str:
    """What a counted key counts."""
    return key.partition(SEP)[2]


def take(state: Mapping[str, int], day: str, what: str, limit: int | None) -> tuple[bool, dict[str, int]]:
    """(allowed, pruned state with this use counted when allowed); `limit` None = unlimited, not counted."""
    pruned = prune_days(state, day)
    if limit is None:
        return True, pruned
    key = counted_key(day, what)
    used = pruned.get(key, 0)
    if used >= limit:
        return False, pruned
    return True, {**pruned, key: used + 1}
