"""Pure policy: next fire time of 5-field cron expressions in a time zone."""
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from pushpipe.jobs.policy.schedule import next_fire, parse

NY = "America/New_York"


def ms(local: str, tz: str = "UTC") -> int:
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def at(ts_ms: int, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).isoformat()


@pytest.mark.parametrize(("cron", "after", "tz", "fire"), [
    ("* * * * *", "2026-01-01T00:00:30", "UTC", "2026-01-01T00:01:00+00:00"),
    ("* * * * *", "2026-01-01T00:00:00", "UTC", "2026-01-01T00:01:00+00:00"),  # strictly after
    ("*/15 * * * *", "2026-01-01T10:07", "UTC", "2026-01-01T10:15:00+00:00"),
    ("*/15 * * * *", "2026-01-01T23:50", "UTC", "2026-01-02T00:00:00+00:00"),
    ("5,35 9 * * *", "2026-01-01T09:35", "UTC", "2026-01-02T09:05:00+00:00"),
    ("0 9-17/4 * * *", "2026-01-01T13:01", "UTC", "2026-01-01T17:00:00+00:00"),
    ("10/20 * * * *", "2026-01-01T00:31", "UTC", "2026-01-01T00:50:00+00:00"),
    # day of week: 2026-01-02 is a Friday
    ("0 9 * * 1-5", "2026-01-02T09:00", "UTC", "2026-01-05T09:00:00+00:00"),
    ("0 9 * * mon-fri", "2026-01-02T08:00", "UTC", "2026-01-02T09:00:00+00:00"),
    ("0 9 * * 0", "2026-01-02T08:00", "UTC", "2026-01-04T09:00:00+00:00"),
    ("0 9 * * 7", "2026-01-02T08:00", "UTC", "2026-01-04T09:00:00+00:00"),
    ("0 0 * * sat,sun", "2026-01-01T12:00", "UTC", "2026-01-03T00:00:00+00:00"),
    # day of month and day of week both restricted: either matches (Vixie cron)
    ("0 0 13 * fri", "2026-01-01T00:00", "UTC", "2026-01-02T00:00:00+00:00"),
    ("0 0 13 * fri", "2026-01-10T00:00", "UTC", "2026-01-13T00:00:00+00:00"),
    # a "*"-prefixed day of month counts as unrestricted: both must match
    ("0 0 */2 * fri", "2026-01-01T00:00", "UTC", "2026-01-09T00:00:00+00:00"),
    # month boundaries
    ("0 0 1 * *", "2026-01-31T12:00", "UTC", "2026-02-01T00:00:00+00:00"),
    ("0 0 31 * *", "2026-01-31T00:00", "UTC", "2026-03-31T00:00:00+00:00"),
    ("0 0 30 * *", "2026-01-30T00:00", "UTC", "2026-03-30T00:00:00+00:00"),
    ("0 12 * feb *", "2026-03-01T00:00", "UTC", "2027-02-01T12:00:00+00:00"),
    ("59 23 31 12 *", "2026-12-31T23:59", "UTC", "2027-12-31T23:59:00+00:00"),
    # leap day
    ("0 0 29 2 *", "2026-01-01T00:00", "UTC", "2028-02-29T00:00:00+00:00"),
    ("0 0 29 2 *", "2028-02-29T00:00", "UTC", "2032-02-29T00:00:00+00:00"),
    ("0 0 29 2 *", "2096-03-01T00:00", "UTC", "2104-02-29T00:00:00+00:00"),  # 2100 is not a leap year
    # time zones
    ("0 9 * * *", "2026-06-01T00:00", "Asia/Shanghai", "2026-06-01T09:00:00+08:00"),
    ("0 9 * * *", "2026-06-01T10:00", "Asia/Kolkata", "2026-06-02T09:00:00+05:30"),
    # New York DST: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00
    ("0 9 * * *", "2026-03-07T09:00", NY, "2026-03-08T09:00:00-04:00"),
    ("30 2 * * *", "2026-03-07T12:00", NY, "2026-03-08T03:00:00-04:00"),  # skipped time fires at the jump
    ("30 2 * * *", "2026-03-08T03:00", NY, "2026-03-09T02:30:00-04:00"),
    ("30 1 * * *", "2026-10-31T12:00", NY, "2026-11-01T01:30:00-04:00"),  # first pass only
    ("0 9 * * *", "2026-10-31T09:00", NY, "2026-11-01T09:00:00-05:00"),
])
def test_next_fire(cron: str, after: str, tz: str, fire: str) -> None:
    assert at(next_fire(cron, ms(after, tz), tz), tz) == fire


def chain(cron: str, after_ms: int, tz: str, n: int) -> list[str]:
    fires = []
    for _ in range(n):
        after_ms = next_fire(cron, after_ms, tz)
        fires.append(at(after_ms, tz)[11:])
    return fires


def test_fixed_time_fires_once_on_the_fall_back_day() -> None:
    fires = [next_fire("30 1 * * *", ms(after, NY), NY) for after in ("2026-10-31T02:00", "2026-11-01T00:00")]
    assert [at(f, NY) for f in fires] == ["2026-11-01T01:30:00-04:00"] * 2
    assert at(next_fire("30 1 * * *", fires[0], NY), NY) == "2026-11-02T01:30:00-05:00"
    second_pass = int(dt.datetime.fromisoformat("2026-11-01T01:10-05:00").timestamp() * 1000)
    assert at(next_fire("30 1 * * *", second_pass, NY), NY) == "2026-11-02T01:30:00-05:00"


def test_every_hour_schedules_fire_in_both_passes_of_the_repeated_hour() -> None:
    fires = chain("*/20 * * * *", ms("2026-11-01T00:50", NY), NY, 8)
    assert fires == ["01:00:00-04:00", "01:20:00-04:00", "01:40:00-04:00",
                     "01:00:00-05:00", "01:20:00-05:00", "01:40:00-05:00", "02:00:00-05:00", "02:20:00-05:00"]


def test_spring_forward_fires_each_skipped_time_once_at_the_jump() -> None:
    fires = chain("*/20 * * * *", ms("2026-03-08T01:30", NY), NY, 4)
    assert fires == ["01:40:00-05:00", "03:00:00-04:00", "03:20:00-04:00", "03:40:00-04:00"]


def test_fires_strictly_increase_through_a_dst_year() -> None:
    after = ms("2026-01-01T00:00", NY)
    for cron in ("0 */5 * * *", "45 1,2 * * *", "0 0 1 * *"):
        last = after
        for _ in range(60):
            nxt = next_fire(cron, last, NY)
            assert nxt > last
            last = nxt


def test_search_is_field_wise_and_fast() -> None:
    started = time.perf_counter()
    next_fire("0 0 29 2 1", ms("2026-01-01T00:00"), "UTC")  # Feb 29 or a Monday in February
    next_fire("0 0 */31 2 mon", ms("2026-01-01T00:00"), "UTC")  # Feb 1 that is a Monday (2027)
    next_fire("0 0 29 2 *", ms("2096-03-01T00:00"), "UTC")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(("cron", "reason"), [
    ("* * * *", "needs 5 fields.*got 4"),
    ("* * * * * *", "got 6"),
    ("60 * * * *", "minute field: 60 is out of range 0-59"),
    ("* 24 * * *", "hour field: 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
    ("* * * 13 *", "month field: 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
    ("*/0 * * * *", "step '0' must be a positive number"),
    ("*/x * * * *", "step 'x' must be a positive number"),
    ("5-1 * * * *", "range '5-1' goes backwards"),
    ("1,,2 * * * *", "empty list item"),
    ("a * * * *", "'a' is not a number"),
    ("* * * foo *", "'foo' is not a number or a name"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
    ("", "needs 5 fields"),
])
def test_invalid_expressions(cron: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        next_fire(cron, 0, "UTC")


def test_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        next_fire("* * * * *", 0, "Mars/Base")


def test_parse_keeps_sunday_as_zero() -> None:
    assert parse("0 0 * * 7").weekdays == frozenset({0})
