"""Credential health, no network: each credential cache reports what it obtained, with its expiry, and each fetch that
failed (connectors/credentials.py); dispatch turns those into pushpipe_credential_expiry_timestamp_seconds (the earliest
of a vendor's exits) and pushpipe_credential_refresh_failures_total (jobs/metrics.py). Failing fetches go to a closed port."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from contract_cases import note, send_once
from pushpipe.connectors import apns, fcm, hms, honor, oppo, vivo
from pushpipe.connectors.base import Outcome
from pushpipe.connectors.credentials import AccessToken, AccessTokenCache, AuthTokenCache
from pushpipe.connectors.dev_credentials import generate_p8
from pushpipe.connectors.oauth import TokenError
from pushpipe.connectors.registry import create_adapter
from pushpipe.jobs import metrics
from pushpipe.jobs.dispatch_policy import DispatchPolicy
from pushpipe.jobs.fanout import records
from pushpipe.jobs.ledger import SendLedger
from pushpipe.jobs.sender import Sender
from pushpipe.producer import push_request
from pushpipe.simulators.fcm import new_service_account

NOW = 1_700_000_000.0
CLOSED = "https://127.0.0.1:9"  # nothing listens: any request fails with a transport error


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorded:
    """CredentialEvents that keep what they were told."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def obtained(self, credential: str, expires_at: float) -> None:
        self.events.append(("obtained", credential, expires_at))

    def failed(self, credential: str) -> None:
        self.events.append(("failed", credential))


@pytest.fixture(scope="module")
def p8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "AuthKey.p8"
    generate_p8(path)
    return path


def apns_config(key: Path) -> apns.ApnsConfig:
    return apns.ApnsConfig(team_id="TEAM123456", key_id="KEY1234567", p8_key=str(key), topic="com.example.app",
                           base_url=CLOSED, sandbox_url=CLOSED)


# ---- the caches ----------------------------------------------------------------------------------

def test_an_access_token_reports_the_expiry_its_endpoint_gave_and_each_failed_fetch() -> None:
    clock, answers = FakeClock(NOW), [AccessToken("t1", NOW + 3599), TokenError(Outcome.UNAVAILABLE, "503", "down")]

    async def fetch() -> AccessToken:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    recorded = Recorded()
    cache = AccessTokenCache(fetch, clock=clock, refresh_margin_s=300, events=recorded)
    assert asyncio.run(cache.get()) == "t1"
    clock.now = NOW + 3300
    with pytest.raises(TokenError):
        asyncio.run(cache.get())
    assert recorded.events == [("obtained", "access token", NOW + 3599), ("failed", "access token")]


def test_an_auth_token_expires_its_lifetime_after_the_fetch_began_and_is_still_refreshed_after_refresh_s() -> None:
    clock, recorded = FakeClock(NOW), Recorded()

    async def fetch() -> str:
        return f"tok{len(recorded.events) + 1}"

    async def scenario() -> list[str]:
        cache = AuthTokenCache(fetch, clock=clock, lifetime_s=86_400, refresh_s=72_000, events=recorded)
        seen = [await cache.get()]
        clock.now = NOW + 71_999
        seen.append(await cache.get())
        clock.now = NOW + 72_000
        return [*seen, await cache.get()]

    assert asyncio.run(scenario()) == ["tok1", "tok1", "tok2"]
    assert recorded.events == [("obtained", "auth token", NOW + 86_400), ("obtained", "auth token", NOW + 72_000 + 86_400)]


# ---- the adapters --------------------------------------------------------------------------------

def test_the_apns_adapter_reports_its_provider_jwt_expiring_an_hour_after_its_iat(p8: Path) -> None:
    adapter = apns.ApnsAdapter(apns_config(p8), clock=FakeClock(NOW + 0.75))
    adapter.credential_events = recorded = Recorded()
    results = asyncio.run(send_once(adapter, note(), ["ab" * 32]))
    assert [r.code for r in results] == ["transport"], "minted locally, then the closed port"
    assert recorded.events == [("obtained", "provider jwt", NOW + 3600)], "its iat is the whole second (int(NOW))"


CLOSED_TOKEN_ENDPOINTS: dict[str, tuple[Any, str]] = {
    "fcm": (lambda: fcm.FcmConfig(service_account=json.dumps(new_service_account("demo")), base_url=CLOSED,
                                  token_uri=CLOSED + "/token"), "access token"),
    "hms": (lambda: hms.HmsConfig(app_id="101234567", client_secret="s", base_url=CLOSED, auth_url=CLOSED), "access token"),
    "honor": (lambda: honor.HonorConfig(app_id="104123456", client_id="c", client_secret="s", base_url=CLOSED, auth_url=CLOSED),
              "access token"),
    "oppo": (lambda: oppo.OppoConfig(app_key="ok", master_secret="oppo-secret", base_url=CLOSED), "auth token"),
    "vivo": (lambda: vivo.VivoConfig(app_id="10004", app_key="vk", app_secret="vivo-secret", base_url=CLOSED), "auth token"),
}


@pytest.mark.parametrize("vendor", list(CLOSED_TOKEN_ENDPOINTS))
def test_an_adapter_whose_token_endpoint_fails_reports_the_failure_of_its_kind(vendor: str) -> None:
    make_config, kind = CLOSED_TOKEN_ENDPOINTS[vendor]
    adapter = create_adapter(vendor, make_config())
    adapter.credential_events = recorded = Recorded()
    results = asyncio.run(send_once(adapter, note(), ["t" * 44]))
    assert [r.outcome for r in results] == [Outcome.UNAVAILABLE]
    assert recorded.events == [("failed", kind)]


# ---- dispatch's metrics --------------------------------------------------------------------------

def expiry(vendor: str, credential: str) -> float | None:
    return REGISTRY.get_sample_value("pushpipe_credential_expiry_timestamp_seconds", {"vendor": vendor, "credential": credential})


def failures(vendor: str, credential: str) -> float:
    return REGISTRY.get_sample_value("pushpipe_credential_refresh_failures_total", {"vendor": vendor, "credential": credential}) or 0.0


def test_a_vendors_gauge_is_the_earliest_expiry_among_its_exits_and_each_failure_is_counted() -> None:
    held: dict[tuple[str, str], dict[str, float]] = {}
    a, b = metrics.ExitCredentials("hms", "hms-a", held), metrics.ExitCredentials("hms", "hms-b", held)
    a.obtained("access token", NOW + 3600)
    assert expiry("hms", "access token") == NOW + 3600
    b.obtained("access token", NOW + 1800)
    assert expiry("hms", "access token") == NOW + 1800
    b.obtained("access token", NOW + 5400)  # b refreshed: a's is the earliest now
    assert expiry("hms", "access token") == NOW + 3600
    before = failures("hms", "access token")
    a.failed("access token")
    assert failures("hms", "access token") == before + 1


def batch(vendor: str, token: str) -> dict[str, Any]:
    return records.batch(push_request("app", ["u1"], "t", "b"), vendor, [(token, "u1", "", "")], now_ms=1, position="pin:u1:0")


def test_dispatch_sets_the_gauge_from_its_adapters_and_counts_their_failed_refreshes(tmp_path: Path, p8: Path) -> None:
    configs: dict[str, Any] = {"apns": apns_config(p8), "hms": CLOSED_TOKEN_ENDPOINTS["hms"][0]()}
    sender = Sender(DispatchPolicy(fallback=None), configs, SendLedger(tmp_path / "ledger.db"))
    failed_before, started = failures("hms", "access token"), int(time.time())

    async def dispatch() -> None:
        await sender.dispatch(batch("apns", "ab" * 32))
        await sender.dispatch(batch("hms", "t" * 44))
        await sender.aclose()

    asyncio.run(dispatch())
    assert started + 3600 <= (expiry("apns", "provider jwt") or 0) <= time.time() + 3600
    assert failures("hms", "access token") == failed_before + 1
