"""The one retry policy: which outcomes are retried, how often, and after how long."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

RETRYABLE = frozenset({"throttled", "unavailable"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # sends per token, the first one included
    base_s: float = 1.0  # delay before the first retry
    multiplier: float = 2.0
    max_delay_s: float = 300.0
    jitter: float = 0.2  # +-20% so retries of one outage do not arrive together

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s <= 0 or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid retry policy {self}")

    def retries(self, outcome: str, attempt: int) -> bool:
        """True if a token with this outcome on send `attempt` (0-based) gets another send."""
        return outcome in RETRYABLE and attempt + 1 < self.max_attempts

    def delay_s(self, attempt: int, retry_after_s: float | None = None, rand: Callable[[], float] = random.random) -> float:
        """Exponential backoff with jitter, never shorter than the vendor's Retry-After."""
        backoff = min(self.max_delay_s, self.base_s * self.multiplier**attempt)
        backoff *= 1 + self.jitter * (2 * rand() - 1)
        return max(backoff, retry_after_s or 0.0)
