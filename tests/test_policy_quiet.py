"""Pure policy: quiet hours in the user's zone, across midnight and DST changes."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pushpipe.jobs.policy.quiet import defer_until, is_urgent, parse_hhmm

NY = "America/New_York"


def ms(local: str, tz: str = "UTC", fold: int = 0) -> int:
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz), fold=fold).timestamp() * 1000)


def utc(at: str) -> int:
    return ms(at, "UTC")


@pytest.mark.parametrize(("now", "tz", "start", "end", "until"), [
    # same-day window
    ("2026-06-10T12:00", "UTC", "12:00", "14:00", "2026-06-10T14:00"),
    ("2026-06-10T13:59", "UTC", "12:00", "14:00", "2026-06-10T14:00"),
    ("2026-06-10T14:00", "UTC", "12:00", "14:00", None),
    ("2026-06-10T11:59", "UTC", "12:00", "14:00", None),
    # crossing midnight: before and after midnight
    ("2026-06-10T22:00", "UTC", "22:00", "08:00", "2026-06-11T08:00"),
    ("2026-06-10T23:30", "UTC", "22:00", "08:00", "2026-06-11T08:00"),
    ("2026-06-11T00:00", "UTC", "22:00", "08:00", "2026-06-11T08:00"),
    ("2026-06-11T07:59", "UTC", "22:00", "08:00", "2026-06-11T08:00"),
    ("2026-06-11T08:00", "UTC", "22:00", "08:00", None),
    ("2026-06-10T21:59", "UTC", "22:00", "08:00", None),
    ("2026-12-31T23:00", "UTC", "22:00", "08:00", "2027-01-01T08:00"),
    # the user's zone decides: 14:30Z is 22:30 in Shanghai, window ends 08:00 local = 00:00Z
    ("2026-06-10T14:30", "Asia/Shanghai", "22:00", "08:00", "2026-06-11T00:00"),
    ("2026-06-10T13:30", "Asia/Shanghai", "22:00", "08:00", None),
    # empty or missing windows never defer
    ("2026-06-10T12:00", "UTC", "12:00", "12:00", None),
    ("2026-06-10T12:00", "UTC", None, "08:00", None),
    ("2026-06-10T12:00", "UTC", None, None, None),
])
def test_windows(now: str, tz: str, start: str, end: str, until: str | None) -> None:
    assert defer_until(utc(now), tz, start, end) == (utc(until) if until else None)


# America/New_York 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z). 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00Z).
@pytest.mark.parametrize(("now", "start", "end", "until"), [
    # spring forward: a 22:00-08:00 night is one hour shorter in UTC
    ("2026-03-07T22:30-05:00", "22:00", "08:00", "2026-03-08T08:00-04:00"),
    ("2026-03-08T01:59-05:00", "22:00", "08:00", "2026-03-08T12:00+00:00"),
    ("2026-03-08T03:00-04:00", "22:00", "08:00", "2026-03-08T12:00+00:00"),
    # an end time inside the gap ends when the clock jumps past it
    ("2026-03-08T01:00-05:00", "23:00", "02:30", "2026-03-08T07:00+00:00"),
    ("2026-03-08T01:59-05:00", "01:00", "02:30", "2026-03-08T03:00-04:00"),
    # a start inside the gap: just after the jump the clock shows 03:00, past 02:30
    ("2026-03-08T03:00-04:00", "02:30", "06:00", "2026-03-08T06:00-04:00"),
    # fall back: a 22:00-08:00 night is one hour longer in UTC
    ("2026-10-31T22:30-04:00", "22:00", "08:00", "2026-11-01T08:00-05:00"),
    ("2026-11-01T01:30-04:00", "22:00", "08:00", "2026-11-01T13:00+00:00"),
    ("2026-11-01T01:30-05:00", "22:00", "08:00", "2026-11-01T13:00+00:00"),
    # an end time in the repeated hour: first pass ends at the first 01:30, second pass at the second
    ("2026-10-31T23:00-04:00", "22:00", "01:30", "2026-11-01T05:30+00:00"),
    ("2026-11-01T01:10-05:00", "22:00", "01:30", "2026-11-01T06:30+00:00"),
    ("2026-11-01T01:45-04:00", "22:00", "01:30", None),
])
def test_windows_across_new_york_dst(now: str, start: str, end: str, until: str | None) -> None:
    at = int(dt.datetime.fromisoformat(now).timestamp() * 1000)
    expected = int(dt.datetime.fromisoformat(until).timestamp() * 1000) if until else None
    assert defer_until(at, NY, start, end) == expected


def test_deferred_until_is_always_after_now_and_outside_the_window() -> None:
    start_ms = utc("2026-03-07T00:00")
    for step in range(0, 3 * 24 * 60, 7):  # every 7 minutes over the spring-forward weekend
        now = start_ms + step * 60_000
        until = defer_until(now, NY, "22:00", "02:30")
        if until is not None:
            assert now < until <= now + 5 * 3600_000
            assert defer_until(until, NY, "22:00", "02:30") is None


@pytest.mark.parametrize("bad", ["7:00", "24:00", "12:60", "noon", "", None])
def test_parse_hhmm_refuses_bad_times(bad) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(bad)


def test_unknown_zone_is_an_error_for_the_caller_to_resolve() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        defer_until(0, "Not/AZone", "22:00", "08:00")


@pytest.mark.parametrize(("request_", "urgent"), [
    ({"category": "transactional", "priority": "normal"}, True),
    ({"category": "security", "priority": "low"}, True),
    ({"category": "marketing", "priority": "high"}, True),
    ({"category": "marketing", "priority": "normal"}, False),
    ({"category": "news", "priority": "low"}, False),
])
def test_is_urgent(request_: dict, urgent: bool) -> None:
    assert is_urgent(request_) is urgent
