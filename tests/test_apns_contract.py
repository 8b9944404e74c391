"""The APNs adapter against the real APNs simulator (HTTP/2 + TLS), through the shared contract table."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from contract_cases import HARNESSES, Case, VendorHarness, apns_token, notification, run_case, send_once
from pushpipe.config import Settings
from pushpipe.connectors.apns import ApnsAdapter
from pushpipe.connectors.base import Outcome
from pushpipe.connectors.dev_credentials import generate_p8, new_key_id
from pushpipe.infra.simulators import SimulatorAdmin, apns_config

CASES = [pytest.param(h, c, id=f"{h.vendor.value}-{c.name}") for h in HARNESSES for c in h.cases]


@pytest.mark.parametrize(("harness", "case"), CASES)
def test_contract(harness: VendorHarness, case: Case, simulators: Settings) -> None:
    run_case(harness, case, simulators)


class ShiftedClock:
    """Wall clock plus an adjustable offset, injected into the adapter."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def __call__(self) -> float:
        return time.time() + self.offset_s


def test_expired_provider_token_is_refreshed_once_and_retry_succeeds(simulators: Settings) -> None:
    clock = ShiftedClock(-2 * 3600)  # our clock is 2 h behind: every JWT we mint is already expired
    adapter = ApnsAdapter(apns_config(simulators), clock=clock)
    note = notification()

    async def scenario() -> tuple[list, list, str, str]:
        await adapter.open()
        try:
            assert adapter.provider_token is not None
            used = adapter.provider_token.get()
            first = await adapter.send(note, [apns_token("e1"), apns_token("e1")])
            after_403 = adapter.provider_token.get()  # same clock: only the 403 can have re-minted it
            clock.offset_s = 0
            second = await adapter.send(note, [apns_token("e2")])
            return first, second, used, after_403
        finally:
            await adapter.aclose()

    first, second, used, after_403 = asyncio.run(scenario())
    assert {(r.outcome, r.code, r.reason) for r in first} == {(Outcome.UNAVAILABLE, "403", "ExpiredProviderToken")}
    assert after_403 != used, "a 403 ExpiredProviderToken drops the cached JWT"
    assert [r.outcome for r in second] == [Outcome.ACCEPTED]


def test_unknown_signing_key_is_rejected_until_registered(simulators: Settings, tmp_path: Path) -> None:
    key_id, key_path = new_key_id(), tmp_path / "AuthKey.p8"
    public_pem = generate_p8(key_path)
    config = apns_config(simulators, key_id=key_id, p8_key=str(key_path))
    [before] = asyncio.run(send_once(ApnsAdapter(config), notification(), [apns_token("6f")]))
    SimulatorAdmin(simulators.simulator_admin_url).register_apns_key(config.team_id, key_id, public_pem)
    [after] = asyncio.run(send_once(ApnsAdapter(config), notification(), [apns_token("6f")]))
    assert (before.outcome, before.code, before.reason) == (Outcome.REJECTED, "403", "InvalidProviderToken")
    assert after.outcome is Outcome.ACCEPTED


def test_quota_per_second_throttles_the_excess(simulators: Settings) -> None:
    admin = SimulatorAdmin(simulators.simulator_admin_url)
    admin.reset(records=False)
    admin.configure(vendor="apns", quota_per_s=2, retry_after_s=1)
    try:
        adapter = ApnsAdapter(apns_config(simulators, max_streams=1))  # one at a time: well under a second
        results = asyncio.run(send_once(adapter, notification(), [apns_token("0a") for _ in range(20)]))
    finally:
        admin.reset(records=False)
    counts = Counter(r.outcome for r in results)
    # 2 per second: how many seconds the 20 calls span depends on the load of the machine
    assert 1 <= counts[Outcome.ACCEPTED] <= 8 and counts[Outcome.THROTTLED] == 20 - counts[Outcome.ACCEPTED]
    assert all(r.retry_after_s == 1.0 for r in results if r.outcome is Outcome.THROTTLED)


def test_admin_api_refuses_unknown_fault_settings(simulators: Settings) -> None:
    response = httpx.post(f"{simulators.simulator_admin_url}/config", json={"vendor": "apns", "bogus": 1}, timeout=10)
    assert response.status_code == 400 and "bogus" in response.json()["error"]


def test_sandbox_notifications_go_to_the_sandbox_host(simulators: Settings) -> None:
    adapter = ApnsAdapter(apns_config(simulators, base_url="https://127.0.0.1:9", timeout_s=2))
    tokens = [apns_token("5b")]
    [sandbox] = asyncio.run(send_once(adapter, notification(environment="sandbox"), tokens))
    [production] = asyncio.run(send_once(adapter, notification(), tokens))
    assert sandbox.outcome is Outcome.ACCEPTED
    assert (production.outcome, production.code) == (Outcome.UNAVAILABLE, "transport")


def test_simulator_records_the_payload_and_apns_id(simulators: Settings) -> None:
    token = apns_token("9a")
    note = notification(data={"order": "42"}, category="ORDER")
    [result] = asyncio.run(send_once(ApnsAdapter(apns_config(simulators)), note, [token]))
    [record] = SimulatorAdmin(simulators.simulator_admin_url).accepted(token, payloads=True)["records"]
    assert record["msg_id"] == result.vendor_msg_id
    assert record["payload"] == {"order": "42", "msg_id": note.msg_id,
                                 "aps": {"alert": {"title": "Hello", "body": "World"}, "sound": "default",
                                         "mutable-content": 1, "category": "ORDER"}}


def test_throughput_5000_tokens(simulators: Settings, record_property: Callable[[str, object], None]) -> None:
    """Tokens/s of one adapter (one HTTP/2 connection, 100 streams) against the zero-latency simulator."""
    tokens = [apns_token("7e") for _ in range(5000)]
    adapter = ApnsAdapter(apns_config(simulators))

    async def timed() -> tuple[list, float]:
        await adapter.open()
        try:
            await adapter.send(notification(), [apns_token("1e")])  # connect + first JWT
            started = time.perf_counter()
            results = await adapter.send(notification(), tokens)
            return results, time.perf_counter() - started
        finally:
            await adapter.aclose()

    results, elapsed = asyncio.run(timed())
    rate = len(tokens) / elapsed
    record_property("apns_tokens_per_s", round(rate))
    print(f"\nAPNs adapter: {len(tokens)} tokens in {elapsed:.2f}s = {rate:.0f} tokens/s")
    assert Counter(r.outcome for r in results) == {Outcome.ACCEPTED: len(tokens)}
    assert rate > 50, "pathologically slow (expect ~0.3-1.6k tokens/s, depending on CPU contention)"


def test_requests_are_multiplexed_up_to_max_streams(simulators: Settings) -> None:
    """300 tokens at 100 ms simulated latency: ~0.3 s with 100 streams, 30 s if sent one by one."""
    admin = SimulatorAdmin(simulators.simulator_admin_url)
    admin.reset(records=False)
    admin.configure(vendor="apns", latency_ms=100)
    try:
        adapter = ApnsAdapter(apns_config(simulators, max_streams=100))
        started = time.perf_counter()
        results = asyncio.run(send_once(adapter, notification(), [apns_token("3c") for _ in range(300)]))
        elapsed = time.perf_counter() - started
    finally:
        admin.reset(records=False)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert elapsed < 6, f"{elapsed:.1f}s: requests are not running concurrently"
