"""Pure policy: per-user daily frequency caps on the user's local day."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pushpipe.jobs.policy.caps import CapConfig, check_and_count, local_day

MARKETING_3 = CapConfig({"Marketing": 3, "news": 0})


def ms(local: str, tz: str = "UTC") -> int:
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


@pytest.mark.parametrize(("at", "tz", "day"), [
    ("2026-01-01T15:59:59+00:00", "Asia/Shanghai", "2026-01-01"),
    ("2026-01-01T16:00:00+00:00", "Asia/Shanghai", "2026-01-02"),
    ("2026-01-01T04:59:59+00:00", "America/New_York", "2025-12-31"),
    ("2026-01-01T05:00:00+00:00", "America/New_York", "2026-01-01"),
    ("2026-01-01T00:00:00+00:00", "UTC", "2026-01-01"),
    ("2026-01-01T11:30:00+00:00", "Pacific/Kiritimati", "2026-01-02"),
])
def test_local_day_around_midnight(at: str, tz: str, day: str) -> None:
    assert local_day(int(dt.datetime.fromisoformat(at).timestamp() * 1000), tz) == day


def test_local_day_refuses_unknown_zones() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        local_day(0, "Nowhere/City")


def test_cap_counts_until_the_limit_then_refuses() -> None:
    state: dict = {}
    results = []
    for _ in range(4):
        allowed, state = check_and_count(state, "marketing", "2026-01-01", MARKETING_3)
        results.append(allowed)
    assert results == [True, True, True, False]
    assert state == {"2026-01-01|marketing": 3}


def test_uncapped_categories_are_not_counted_and_zero_blocks() -> None:
    assert check_and_count({}, "transactional", "2026-01-01", MARKETING_3) == (True, {})
    assert check_and_count({}, "news", "2026-01-01", MARKETING_3) == (False, {})


def test_a_new_local_day_starts_a_new_count_and_old_days_are_pruned() -> None:
    state = {"2025-12-30|marketing": 3, "2025-12-31|marketing": 3, "2026-01-01|marketing": 3, "junk": 1}
    allowed, new = check_and_count(state, "marketing", "2026-01-02", MARKETING_3)
    assert allowed
    assert new == {"2026-01-01|marketing": 3, "2026-01-02|marketing": 1}
    assert state["2025-12-30|marketing"] == 3  # input untouched


def test_caps_follow_the_users_midnight_not_utc() -> None:
    """Shanghai: 15:59Z is still Jan 1, 16:00Z is Jan 2; New York: 04:59Z Jan 1 is still Dec 31."""
    state: dict = {}
    for _ in range(3):
        _, state = check_and_count(state, "marketing", local_day(ms("2026-01-01T15:00"), "Asia/Shanghai"), MARKETING_3)
    assert not check_and_count(state, "marketing", local_day(ms("2026-01-01T15:59"), "Asia/Shanghai"), MARKETING_3)[0]
    assert check_and_count(state, "marketing", local_day(ms("2026-01-01T16:00"), "Asia/Shanghai"), MARKETING_3)[0]
    ny = {f"{local_day(ms('2026-01-01T04:00'), 'America/New_York')}|marketing": 3}
    assert not check_and_count(ny, "marketing", local_day(ms("2026-01-01T04:59"), "America/New_York"), MARKETING_3)[0]
    assert check_and_count(ny, "marketing", local_day(ms("2026-01-01T05:00"), "America/New_York"), MARKETING_3)[0]


def test_a_user_moving_west_keeps_the_later_days_count() -> None:
    state = {"2026-01-02|marketing": 3}
    allowed, new = check_and_count(state, "marketing", "2026-01-01", MARKETING_3)
    assert allowed and new == {"2026-01-02|marketing": 3, "2026-01-01|marketing": 1}


@pytest.mark.parametrize("per_day", [{"marketing": -1}, {"marketing": 1.5}, {"": 2}, {"marketing": True}])
def test_bad_cap_configs_are_refused(per_day: dict) -> None:
    with pytest.raises(ValueError):
        CapConfig(per_day)


def test_bad_local_day_is_refused() -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        check_and_count({}, "marketing", "01/01/2026", MARKETING_3)
