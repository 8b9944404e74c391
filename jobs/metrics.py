"""Dispatch metrics for Prometheus, served by the dispatch worker on PUSHPIPE_DISPATCH_METRICS_PORT.

The Python worker creates its operators when the first batch arrives, so /metrics answers from then on.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TOKENS = Counter("pushpipe_dispatch_tokens", "Tokens by vendor, exit and outcome (reason = vendor code)",
                 ["vendor", "exit", "outcome", "reason"])
CALLS = Histogram("pushpipe_vendor_call_seconds", "Latency of one vendor send call", ["vendor", "exit"],
                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BREAKER = Gauge("pushpipe_breaker_open", "Circuit breaker state per exit: 0 closed, 0.5 half-open, 1 open",
                ["vendor", "exit"])
RATE = Gauge("pushpipe_rate_limit_tokens_per_second", "Current adaptive send rate", ["app", "vendor"])
RETRIES = Counter("pushpipe_dispatch_retries", "Tokens scheduled for another send (through push.retry)", ["vendor"])
FALLBACKS = Counter("pushpipe_dispatch_fallback_tokens", "Tokens sent through the fallback channel", ["vendor", "fallback"])
LEDGER = Counter("pushpipe_ledger_tokens", "Replayed tokens: skipped (already sent) or resent (in doubt)", ["kind"])
INFLIGHT = Gauge("pushpipe_dispatch_inflight_batches", "Batches being sent", ["priority"])

_served: set[int] = set()


def serve(port: int) -> None:
    """Start the /metrics endpoint once per process (open() runs again after a task restart)."""
    if port and port not in _served:
        try:
            start_http_server(port, addr="127.0.0.1")
        except OSError:  # the previous worker still holds the port; metrics resume after it exits
            return
        _served.add(port)
