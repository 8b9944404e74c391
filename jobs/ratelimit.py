"""Send rate per (app, vendor) in device tokens per second: a bucket of allowance whose rate adapts to throttling (AIMD).

Each 429 halves the rate (multiplicative decrease, not below `min_rate`); each successful
call adds `increase` per second back (additive increase, up to the configured rate).
Waiting callers are served by priority: a low-priority send waits while any higher one waits.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

PRIORITIES = ("high", "normal", "low")


class AdaptiveRateLimiter:
    def __init__(self, rate: float, min_rate: float = 1.0, increase: float | None = None, decrease: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or not 0 < min_rate <= rate or not 0 < decrease < 1:
            raise ValueError("need rate >= min_rate > 0 and 0 < decrease < 1")
        self.max_rate, self.min_rate, self.rate = rate, min_rate, rate
        self.increase = increase if increase is not None else max(1.0, rate / 100)
        self.decrease = decrease
        self._clock = clock
        self._allowance = rate  # tokens that may go now: one second of burst
        self._last = clock()
        self._waiting = dict.fromkeys(PRIORITIES, 0)

    def _refill(self) -> None:
        now = self._clock()
        self._allowance = min(self.rate, self._allowance + (now - self._last) * self.rate)
        self._last = now

    def _outranked(self, priority: str) -> bool:
        return any(self._waiting[p] for p in PRIORITIES[: PRIORITIES.index(priority)])

    async def acquire(self, n: int, priority: str = "normal") -> None:
        """Wait until `n` sends fit the rate; `n` above one second's worth waits for a full bucket, then overdraws."""
        self._waiting[priority] += 1
        try:
            while True:
                self._refill()
                need = min(n, self.rate)
                if self._allowance >= need and not self._outranked(priority):
                    self._allowance -= n
                    return
                await asyncio.sleep(max(0.001, (need - self._allowance) / self.rate))
        finally:
            self._waiting[priority] -= 1

    def on_throttled(self) -> None:
        self.rate = max(self.min_rate, self.rate * self.decrease)
        self._allowance = min(self._allowance, 0.0)

    def on_success(self) -> None:
        self.rate = min(self.max_rate, self.rate + self.increase)
