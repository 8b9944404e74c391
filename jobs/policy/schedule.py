"""Recurring schedules: the next fire time of a 5-field cron expression in a time zone.

    minute hour day-of-month month day-of-week      e.g. "*/15 9-17 * * 1-5", "0 0 29 2 *"

Each field takes "*", numbers, lists "1,2", ranges "1-5" and steps "*/15", "1-30/5", "5/15" (= 5-max/15).
Months and days of week also take English three-letter names (jan, mon); day of week 0 or 7 is Sunday.
Day-of-month and day-of-week follow Vixie cron: when both are restricted a day matching either fires;
a field written with a leading "*" (also "*/2") counts as unrestricted, and then both must match.

Times are wall-clock times in the zone. At DST changes:
- a time skipped by a spring-forward gap fires once, when the clock jumps past it;
- in a repeated (fall-back) hour a time fires once, in the first pass, unless the hour field is
  every hour: then both passes fire, so "*/15 * * * *" keeps its rhythm.
The search goes field by field (year, month, day, hour, minute), never minute by minute.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pushpipe.jobs.policy import zones

_EPOCH = dt.datetime(1970, 1, 1)
SEARCH_YEARS = 400  # the Gregorian calendar repeats after 400 years: nothing found by then never fires
_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool
    weekdays_star: bool

    def day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow


def _number(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower()) if names else None
    if value is None:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"cron {name} field: {text!r} is not a number" + (" or a name" if names else ""))
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron {name} field: {value} is out of range {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"cron {name} field {text!r} has an empty list item")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ValueError(f"cron {name} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = _number(start, name, low, high, names), _number(end, name, low, high, names)
            if first > last:
                raise ValueError(f"cron {name} field: range {base!r} goes backwards")
        else:
            first = _number(base, name, low, high, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def parse(expression: str) -> Cron:
    """The parsed expression; ValueError with the reason when it is invalid or can never fire."""
    parts = expression.split() if isinstance(expression, str) else []
    if len(parts) != 5:
        raise ValueError(f"cron expression needs 5 fields (minute hour day-of-month month day-of-week), "
                         f"got {len(parts)} in {expression!r}")
    minutes, hours, days, months, weekdays = (_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True))
    cron = Cron(tuple(sorted(minutes)), tuple(sorted(hours)), frozenset(days), tuple(sorted(months)),
                frozenset(d % 7 for d in weekdays), parts[2].startswith("*"), parts[4].startswith("*"))
    if (cron.weekdays_star or cron.days_star) and all(min(days) > calendar.monthrange(2000, m)[1] for m in months):
        raise ValueError(f"cron expression {expression!r} never fires: no month in it has day {min(days)}")
    return cron


def _days(cron: Cron, year: int, month: int, first: int) -> list[int]:
    last = calendar.monthrange(year, month)[1]
    return [d for d in range(first, last + 1) if cron.day_matches(dt.date(year, month, d))]


def next_wall(cron: Cron, start: dt.datetime) -> dt.datetime | None:
    """The first wall-clock minute at or after `start` (naive, whole minute) that matches, field by field."""
    for year in range(start.year, min(start.year + SEARCH_YEARS, dt.MAXYEAR) + 1):
        same_year = year == start.year
        for month in cron.months:
            if same_year and month < start.month:
                continue
            same_month = same_year and month == start.month
            for day in _days(cron, year, month, start.day if same_month else 1):
                same_day = same_month and day == start.day
                for hour in cron.hours:
                    if same_day and hour < start.hour:
                        continue
                    same_hour = same_day and hour == start.hour
                    for minute in cron.minutes:
                        if not same_hour or minute >= start.minute:
                            return dt.datetime(year, month, day, hour, minute)
    return None


def _transition(after_s: int, until_s: int, tz: ZoneInfo) -> int:
    """The first instant in (after_s, until_s] whose UTC offset differs from after_s's (one must exist)."""
    offset, lo, hi = zones.utc_offset_s(after_s, tz), after_s, until_s
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if zones.utc_offset_s(mid, tz) == offset:
            lo = mid
        else:
            hi = mid
    return hi


def _every_hour(spec: Cron) -> bool:
    return len(spec.hours) == 24


def _repeat_fire(spec: Cron, after_ms: int, fire_ms: int, tz: ZoneInfo) -> int | None:
    """For every-hour schedules: a fire (ms) in the second pass of a fall-back hour between after and fire."""
    after_s, fire_s = after_ms // 1000, fire_ms // 1000
    if not _every_hour(spec) or zones.utc_offset_s(after_s, tz) <= zones.utc_offset_s(fire_s, tz):
        return None
    change = _transition(after_s, fire_s, tz)
    before, offset = zones.utc_offset_s(change - 1, tz), zones.utc_offset_s(change, tz)
    repeat_from = zones.wall(change * 1000, tz)  # the first wall time shown twice
    wall = next_wall(spec, repeat_from.replace(second=0, microsecond=0))
    if wall is None or wall >= repeat_from + dt.timedelta(seconds=before - offset):
        return None
    fire = (int((wall - _EPOCH).total_seconds()) - offset) * 1000
    return fire if after_ms < fire < fire_ms else None


def next_fire(cron: str, after_ms: int, tz: str) -> int:
    """Epoch ms of the first fire of `cron` strictly after `after_ms`, in the IANA zone `tz`.

    ValueError for an invalid expression or zone, or an expression that never fires.
    """
    spec, tzinfo = parse(cron), zones.zone(tz)
    start = zones.wall(after_ms, tzinfo).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while (wall := next_wall(spec, start)) is not None:
        instants = zones.instants(wall, tzinfo)
        fires = [s * 1000 for s in (instants if _every_hour(spec) else instants[:1]) if s * 1000 > after_ms]
        if fires:
            return _repeat_fire(spec, after_ms, fires[0], tzinfo) or fires[0]
        start = wall + dt.timedelta(minutes=1)
    raise ValueError(f"cron expression {cron!r} never fires")
