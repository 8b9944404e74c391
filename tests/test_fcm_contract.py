"""FCM beyond the shared contract table (tests/contract_cases.py): OAuth token reuse and refresh,
the simulator's JWT checks, project mismatch and multiplexing, all against the real simulator."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest

from contract_cases import fcm_token, notification, send_once
from pushpipe.config import Settings
from pushpipe.connectors.base import Outcome
from pushpipe.connectors.fcm import SCOPE, FcmAdapter, FcmConfig, service_account_assertion
from pushpipe.connectors.http import ssl_verify
from pushpipe.infra.simulators import SimulatorAdmin, simulator_config


def fcm_config(settings: Settings, **overrides: Any) -> FcmConfig:
    config: FcmConfig = simulator_config(settings, "fcm", **overrides)
    return config


@pytest.fixture
def admin(simulator_admin: SimulatorAdmin) -> SimulatorAdmin:
    return simulator_admin


def test_one_access_token_serves_many_requests_and_sends(simulators: Settings, admin: SimulatorAdmin) -> None:
    adapter = FcmAdapter(fcm_config(simulators))

    async def scenario() -> list:
        await adapter.open()
        try:
            first = await adapter.send(notification(), [fcm_token("a1") for _ in range(50)])
            return first + await adapter.send(notification(), [fcm_token("a1") for _ in range(50)])
        finally:
            assert adapter.access_tokens is not None and adapter.access_tokens.fetches == 1
            await adapter.aclose()

    assert {r.outcome for r in asyncio.run(scenario())} == {Outcome.ACCEPTED}


def test_many_concurrent_401s_cause_one_refresh(simulators: Settings, admin: SimulatorAdmin) -> None:
    admin.configure(vendor="fcm", access_token_ttl_s=0)  # tokens die at once, though they say 3600 s
    adapter = FcmAdapter(fcm_config(simulators))

    async def scenario() -> tuple[list, list, int]:
        await adapter.open()
        try:
            first = await adapter.send(notification(), [fcm_token("b2") for _ in range(20)])
            await asyncio.to_thread(admin.reset, records=False)
            second = await adapter.send(notification(), [fcm_token("b2") for _ in range(20)])
            assert adapter.access_tokens is not None
            return first, second, adapter.access_tokens.fetches
        finally:
            await adapter.aclose()

    first, second, fetches = asyncio.run(scenario())
    assert {(r.outcome, r.code) for r in first} == {(Outcome.UNAVAILABLE, "401")}
    assert {r.outcome for r in second} == {Outcome.ACCEPTED}
    assert fetches == 2


def test_wrong_project_is_rejected(simulators: Settings, admin: SimulatorAdmin) -> None:
    adapter = FcmAdapter(fcm_config(simulators, project_id="someone-else"))
    [result] = asyncio.run(send_once(adapter, notification(), [fcm_token("c3")]))
    assert (result.outcome, result.code, result.reason) == (Outcome.REJECTED, "403", "PERMISSION_DENIED")


def test_requests_are_multiplexed(simulators: Settings, admin: SimulatorAdmin) -> None:
    """200 tokens at 100 ms simulated latency: well under 20 s only if they run concurrently."""
    admin.configure(vendor="fcm", latency_ms=100)
    started = time.perf_counter()
    results = asyncio.run(send_once(FcmAdapter(fcm_config(simulators)), notification(), [fcm_token("d4") for _ in range(200)]))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert time.perf_counter() - started < 6


# ---- the simulator's token endpoint checks the assertion like Google -----------------------------

def _exchange(config: FcmConfig, assertion: str) -> httpx.Response:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    return httpx.post(config.token_url(), data=form, verify=ssl_verify(config.verify), timeout=10)


def test_valid_assertion_gets_an_access_token(simulators: Settings) -> None:
    config = fcm_config(simulators)
    resp = _exchange(config, service_account_assertion(config.account(), config.token_url(), SCOPE, time.time()))
    assert resp.status_code == 200 and resp.json()["expires_in"] == 3600 and resp.json()["access_token"]


@pytest.mark.parametrize(("change", "error"), [
    ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),  # not this endpoint
    ({"exp": 7200}, "invalid_grant"),  # longer than 1 h
    ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "invalid_scope"),
    ({"iat": -7200, "exp": -3600}, "invalid_grant"),  # expired
])
def test_bad_assertions_are_refused(simulators: Settings, change: dict, error: str) -> None:
    config = fcm_config(simulators)
    account, now = config.account(), int(time.time())
    claims = {"iss": account.client_email, "scope": SCOPE, "aud": config.token_url(), "iat": now, "exp": now + 3600}
    claims.update({k: now + v if k in ("iat", "exp") else v for k, v in change.items()})
    assertion = jwt.encode(claims, account.signing_key(), algorithm="RS256", headers={"kid": account.private_key_id})
    resp = _exchange(config, assertion)
    assert (resp.status_code, resp.json()["error"]) == (400, error)


def test_simulator_refuses_non_string_data(simulators: Settings) -> None:
    config = fcm_config(simulators)
    assertion = service_account_assertion(config.account(), config.token_url(), SCOPE, time.time())
    bearer = _exchange(config, assertion).json()["access_token"]
    message = {"token": fcm_token("e5"), "data": {"n": 5}}
    resp = httpx.post(config.send_url(), json={"message": message}, headers={"authorization": f"Bearer {bearer}"},
                      verify=ssl_verify(config.verify), timeout=10)
    error = resp.json()["error"]
    violations = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    assert (resp.status_code, error["status"], violations) == (400, "INVALID_ARGUMENT", ["message.data"])


def test_vendors_file_entry_points_at_the_simulator(simulators: Settings) -> None:
    config = fcm_config(simulators)
    assert config.base_url.startswith(simulators.simulator_url) and config.token_url().endswith("/fcm/token")
    assert config.account().project_id == "pushpipe-demo" and config.verify
