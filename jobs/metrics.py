"""Dispatch metrics for Prometheus, served by the dispatch worker on PUSHPIPE_DISPATCH_METRICS_PORT.

The Python worker creates its operators when the first batch arrives, so /metrics answers from then on.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
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
DUE_TO_ACCEPTED = Histogram("pushpipe_batch_due_to_accepted_seconds",
                            "From when a batch was due (its request, deliver_at or the end of quiet hours) to the vendor's answer"
                            " accepting its tokens, per batch", ["vendor", "priority"],
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
INFLIGHT = Gauge("pushpipe_dispatch_inflight_batches", "Batches being sent", ["priority"])
# credential: "tls ca" (watch_expiry), or a kind of connectors.credentials ("access token", "auth token", "provider jwt"),
# which are fetched on use and live hours at most: an idle vendor's may lie in the past
CREDENTIAL_EXPIRY = Gauge("pushpipe_credential_expiry_timestamp_seconds",
                          "When a vendor credential or TLS certificate in use expires (Unix time; the earliest of the vendor's exits)",
                          ["vendor", "credential"])
CREDENTIAL_FAILURES = Counter("pushpipe_credential_refresh_failures", "Failed fetches (or mints) of a vendor credential",
                              ["vendor", "credential"])

_served: set[int] = set()


def watch_expiry(configs: Mapping[str, object]) -> None:
    """The expiry of each vendor's TLS trust file (a CA bundle or pinned certificate), for the alert rules."""
    for vendor, config in configs.items():
        verify = getattr(config, "verify", None)
        if isinstance(verify, str) and Path(verify).is_file():
            expiry = earliest_expiry(Path(verify).read_bytes())
            if expiry is not None:
                CREDENTIAL_EXPIRY.labels(vendor, "tls ca").set(expiry)


@dataclass
class ExitCredentials:
    """One exit's credential events (connectors.credentials.CredentialEvents) as its vendor's metrics. The exits of a
    vendor share `held` ((vendor, credential) -> exit -> expiry), so the gauge is the earliest expiry among them."""

    vendor: str
    exit: str
    held: dict[tuple[str, str], dict[str, float]]

    def obtained(self, credential: str, expires_at: float) -> None:
        expiries = self.held.setdefault((self.vendor, credential), {})
        expiries[self.exit] = expires_at
        CREDENTIAL_EXPIRY.labels(self.vendor, credential).set(min(expiries.values()))
        CREDENTIAL_FAILURES.labels(self.vendor, credential)  # the series starts at 0, so increase() sees a first failure

    def failed(self, credential: str) -> None:
        CREDENTIAL_FAILURES.labels(self.vendor, credential).inc()


def earliest_expiry(pem: bytes) -> float | None:
    """The earliest notAfter of the certificates in a PEM bundle (Unix time), None if it holds none."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return None
    return min(c.not_valid_after_utc.timestamp() for c in certificates)


def serve(port: int) -> None:
    """Start the /metrics endpoint once per process (open() runs again after a task restart)."""
    if port and port not in _served:
        try:
            start_http_server(port, addr="127.0.0.1")
        except OSError:  # the previous worker still holds the port; metrics resume after it exits
            return
        _served.add(port)
