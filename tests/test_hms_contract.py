"""HMS and Honor beyond the shared contract table (tests/contract_cases.py), against the real
simulator: delivery receipts to a real HTTP receiver, the 1000-token batch, token reuse, Honor's
alternative token path and its timestamp header."""
from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from contract_cases import huawei_token, notification, send_once
from pushpipe.config import Settings
from pushpipe.connectors.base import Outcome, TokenResult, VendorAdapter
from pushpipe.connectors.honor import KEYCLOAK_TOKEN_PATH
from pushpipe.connectors.http import ssl_verify
from pushpipe.connectors.registry import create_adapter
from pushpipe.infra.simulators import SimulatorAdmin, simulator_config

HUAWEI_LIKE = ("hms", "honor")


class ReceiptReceiver:
    """A plain HTTP endpoint that stores every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/receipts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self) -> list[dict[str, Any]]:
        return [s for body in list(self.bodies) for s in body["statuses"]]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.statuses()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.statuses()


@pytest.fixture
def receiver() -> Iterator[ReceiptReceiver]:
    r = ReceiptReceiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def admin(simulator_admin: SimulatorAdmin) -> SimulatorAdmin:
    return simulator_admin


def send(adapter: VendorAdapter, tokens: list[str], **note: Any) -> list[TokenResult]:
    return asyncio.run(send_once(adapter, notification(**note), tokens))


@pytest.mark.parametrize("vendor", HUAWEI_LIKE)
def test_accepted_tokens_get_delivery_receipts(vendor: str, simulators: Settings, admin: SimulatorAdmin,
                                               receiver: ReceiptReceiver) -> None:
    tokens = [huawei_token("f1") for _ in range(3)]
    dead = huawei_token("f1")
    admin.configure(vendor=vendor, receipt_url=receiver.url, unregistered_tokens=[dead])
    config = simulator_config(simulators, vendor)
    results = send(create_adapter(vendor, config), [*tokens, dead], msg_id="msg-receipts")
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3 + [Outcome.INVALID_TOKEN]
    statuses = receiver.wait_for(3)
    assert sorted(s["token"] for s in statuses) == sorted(tokens), "one receipt per accepted token, none for the dead one"
    for s in statuses:
        assert set(s) == {"biTag", "appid", "token", "status", "timestamp", "requestId"}
        assert (s["biTag"], s["appid"], s["status"]) == ("contract|msg-receipts", config.app_id, 0)
        assert s["requestId"] == results[0].vendor_msg_id and abs(s["timestamp"] / 1000 - time.time()) < 60


@pytest.mark.parametrize("vendor", HUAWEI_LIKE)
def test_no_receipt_url_means_no_receipts(vendor: str, simulators: Settings, admin: SimulatorAdmin,
                                          receiver: ReceiptReceiver) -> None:
    results = send(create_adapter(vendor, simulator_config(simulators, vendor)), [huawei_token("f2")])
    assert results[0].outcome is Outcome.ACCEPTED
    time.sleep(0.3)
    assert receiver.statuses() == []


@pytest.mark.parametrize("vendor", HUAWEI_LIKE)
def test_a_full_batch_of_1000_tokens_is_one_request(vendor: str, simulators: Settings, admin: SimulatorAdmin) -> None:
    prefix = secrets.token_hex(6)
    tokens = [huawei_token(prefix) for _ in range(1000)]
    results = send(create_adapter(vendor, simulator_config(simulators, vendor)), tokens)
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert len({r.vendor_msg_id for r in results}) == 1, "one request id for the whole batch"
    assert admin.accepted(prefix)["count"] == 1000


@pytest.mark.parametrize("vendor", HUAWEI_LIKE)
def test_access_token_is_reused_across_sends(vendor: str, simulators: Settings, admin: SimulatorAdmin) -> None:
    adapter = create_adapter(vendor, simulator_config(simulators, vendor))

    async def go() -> int:
        await adapter.open()
        try:
            for _ in range(3):
                assert (await adapter.send(notification(), [huawei_token("f3")]))[0].outcome is Outcome.ACCEPTED
            return adapter.access_tokens.fetches  # type: ignore[attr-defined]
        finally:
            await adapter.aclose()

    assert asyncio.run(go()) == 1


def test_honor_keycloak_token_path_works_too(simulators: Settings, admin: SimulatorAdmin) -> None:
    config = simulator_config(simulators, "honor", token_path=KEYCLOAK_TOKEN_PATH)
    assert send(create_adapter("honor", config), [huawei_token("f4")])[0].outcome is Outcome.ACCEPTED


def _bearer(config: Any) -> str:
    form = {"grant_type": "client_credentials", "client_id": config.oauth_client_id(), "client_secret": config.secret()}
    resp = httpx.post(config.token_url(), data=form, verify=ssl_verify(config.verify), timeout=10)
    assert resp.status_code == 200 and resp.json()["expires_in"] == 3600
    return str(resp.json()["access_token"])


def test_honor_requires_the_timestamp_header(simulators: Settings) -> None:
    config = simulator_config(simulators, "honor")
    body = {"android": {"ttl": "60s"}, "token": [huawei_token("f5")]}
    resp = httpx.post(config.send_url(), json=body, headers={"authorization": f"Bearer {_bearer(config)}"},
                      verify=ssl_verify(config.verify), timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (400, 80100001)


def test_hms_token_for_another_app_is_refused(simulators: Settings) -> None:
    config = simulator_config(simulators, "hms")
    other_app = config.send_url().replace(f"/v1/{config.app_id}/", "/v1/999999999/")
    resp = httpx.post(other_app, json={"message": {"token": [huawei_token("f6")]}},
                      headers={"authorization": f"Bearer {_bearer(config)}"}, verify=ssl_verify(config.verify),
                      timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (403, "80300002")


@pytest.mark.parametrize("vendor", HUAWEI_LIKE)
def test_unknown_client_is_rejected_until_registered(vendor: str, simulators: Settings, admin: SimulatorAdmin) -> None:
    app_id, secret = str(100_000_000 + secrets.randbelow(899_999_999)), secrets.token_hex(16)
    client = {"app_id": app_id, "client_id": f"client-{app_id}", "client_secret": secret}
    config = simulator_config(simulators, vendor, **client)
    [before] = send(create_adapter(vendor, config), [huawei_token("f7")])
    admin.register_key(vendor, **client)
    [after] = send(create_adapter(vendor, config), [huawei_token("f7")])
    assert (before.outcome, before.code) == (Outcome.REJECTED, "401")
    assert after.outcome is Outcome.ACCEPTED
