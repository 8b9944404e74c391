"""Token buckets per app: the send rate an app may use, and how often its secret may be checked the slow way."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up. A request for n tokens is let through when the bucket
    holds min(n, burst) of them, and takes all n: the level may go below zero, and the debt is paid back before the
    next one passes. So a batch larger than the burst still goes through, and over time no more than the rate does."""

    rate_per_s: float
    burst: float
    level: float
    at: float

    def take(self, n: int, now: float) -> float:
        """0 if the n tokens were taken; else the seconds until a request for them would pass."""
        self.level = min(self.burst, self.level + (now - self.at) * self.rate_per_s)
        self.at = now
        needed = min(float(n), self.burst)
        if self.level >= needed:
            self.level -= n
            return 0.0
        return (needed - self.level) / self.rate_per_s


class Buckets:
    """One bucket per app, made on first use; a changed rate gets a new, full bucket."""

    def __init__(self, burst_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst_s, self.clock = burst_s, clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, app_id: str, rate_per_s: float, n: int = 1) -> float:
        now = self.clock()
        bucket = self._buckets.get(app_id)
        if bucket is None or bucket.rate_per_s != rate_per_s:
            burst = max(1.0, rate_per_s * self.burst_s)
            bucket = self._buckets[app_id] = TokenBucket(rate_per_s, burst, burst, now)
        return bucket.take(n, now)


def retry_after(wait_s: float) -> str:
    """A Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
