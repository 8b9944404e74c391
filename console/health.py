"""Each vendor's health for the console: dispatch's per-vendor figures and alerts (pushpipe/stream_health.py), and
when the credentials each vendor's exits hold expire (the jobs' pushpipe_credential_expiry_timestamp_seconds)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from pushpipe.stream_health import StreamHealth, instant

EXPIRY = "min by (vendor, credential) (pushpipe_credential_expiry_timestamp_seconds)"
# fetched again on use, living an hour or a day: CredentialExpiringSoon leaves them out too (infra/alerting/rules.yml)
SHORT_LIVED = ("access token", "auth token", "provider jwt")
SOON_S = 14 * 86400  # CredentialExpiringSoon's bound


@dataclass(frozen=True)
class Credential:
    vendor: str
    credential: str  # "tls ca", or a kind of connectors.credentials ("access token", ...)
    expires_at_s: float  # Unix time


def credentials(prometheus_url: str, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None) -> list[Credential]:
    """Each vendor's credentials with the earliest expiry among its exits; httpx errors or PrometheusError when it does not answer."""
    with httpx.Client(base_url=prometheus_url, timeout=timeout_s, transport=transport) as client:
        series = instant(client, EXPIRY)
    return sorted((Credential(labels.get("vendor", ""), labels.get("credential", ""), value) for labels, value in series if value is not None),
                  key=lambda c: (c.vendor, c.credential))


def vendor_rows(health: StreamHealth, held: list[Credential], now_s: float) -> list[dict[str, Any]]:
    """One row per vendor that dispatch has figures for or that holds a credential, by name."""
    figures = {s.vendor: s for s in health.stages if s.stage == "dispatch" and s.vendor}
    rows = []
    for vendor in sorted(set(figures) | {c.vendor for c in held}):
        stage = figures.get(vendor)
        rows.append({"vendor": vendor,
                     "throughput": stage.throughput if stage else None,  # tokens/s
                     "failure_rate": stage.failure_rate if stage else None,
                     "p99_latency_s": stage.p99_latency_s if stage else None,  # due to accepted
                     "open_breakers": stage.open_breakers if stage else None,
                     "alerts": [a.name for a in health.alerts if a.labels.get("vendor") == vendor],
                     "credentials": [credential_row(c, now_s) for c in held if c.vendor == vendor]})
    return rows


def credential_row(credential: Credential, now_s: float) -> dict[str, Any]:
    left = credential.expires_at_s - now_s
    short_lived = credential.credential in SHORT_LIVED
    return {"credential": credential.credential, "expires_at": int(credential.expires_at_s * 1000), "expires_in_s": int(left),
            "short_lived": short_lived, "expiring_soon": not short_lived and left < SOON_S}
