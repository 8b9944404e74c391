"""Per-user daily frequency caps per category, counted on the user's local day.

State is a dict {"YYYY-MM-DD|category": count} in keyed state per (app, pin), pruned to the last
two local days (yesterday is kept so a time-zone change never resets a count early).
Only categories listed in `CapConfig.per_day` are capped and counted; a cap of 0 suppresses the category.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pushpipe.jobs.policy.classify import normalise_category
from pushpipe.jobs.policy.counters import parse_day, take
from pushpipe.jobs.policy.zones import local_day

__all__ = ["CapConfig", "check_and_count", "local_day"]


@dataclass(frozen=True)
class CapConfig:
    """Daily sends allowed per user per category, e.g. {"marketing": 3}; categories not listed are uncapped."""

    per_day: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        caps: dict[str, int] = {}
        for category, limit in dict(self.per_day).items():
            name = normalise_category(category)
            if not name:
                raise ValueError("cap category must be a non-empty string")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"cap for {name!r} must be an int >= 0, got {limit!r}")
            caps[name] = limit
        object.__setattr__(self, "per_day", caps)  # normalised copy; a plain dict so configs pickle

    def limit(self, category: str | None) -> int | None:
        return self.per_day.get(normalise_category(category))


def check_and_count(state: Mapping[str, int], category: str, local_day: str,
                    config: CapConfig) -> tuple[bool, dict[str, int]]:
    """(allowed, new state): the send is counted only when allowed and capped; `state` is not changed."""
    parse_day(local_day)
    return take(state, local_day, normalise_category(category), config.limit(category))
