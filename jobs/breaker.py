"""A circuit breaker per vendor exit: stop calling an exit that keeps failing, probe it later."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5  # consecutive failed calls that open the breaker
    open_s: float = 10.0  # how long it stays open before one probe call is let through
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    state: str = field(default=CLOSED)

    def allow(self) -> bool:
        """May a call go to this exit now? In half-open state only one probe at a time."""
        if self.state == OPEN and self.clock() - self.opened_at >= self.open_s:
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return self.state == CLOSED

    def until_probe_s(self) -> float:
        """Seconds until a probe call may go through (0 when calls may go now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.open_s - (self.clock() - self.opened_at))

    def record(self, success: bool) -> None:
        self.probing = False
        if success:
            self.failures, self.state = 0, CLOSED
            return
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at = OPEN, self.clock()
