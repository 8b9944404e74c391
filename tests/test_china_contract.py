"""Xiaomi, OPPO, vivo, Meizu and Umeng beyond the shared contract table, against the real simulator:
receipts, Meizu's notification switch, daily caps, chunking, local token checks, signatures."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from contract_cases import MEIZU, OPPO, UMENG, VIVO, XIAOMI, VendorHarness, notification, send_once
from pushpipe.config import Settings
from pushpipe.connectors.base import Outcome, TokenResult, Vendor, VendorAdapter
from pushpipe.connectors.batch_adapter import seconds_until_china_hour
from pushpipe.connectors.registry import create_adapter
from pushpipe.connectors.umeng import UmengAdapter
from pushpipe.infra.simulators import SimulatorAdmin, simulator_config


def send(settings: Settings, h: VendorHarness, tokens: list[str], **overrides: Any) -> list[TokenResult]:
    adapter = create_adapter(h.vendor, simulator_config(settings, h.vendor.value, **overrides))
    return asyncio.run(send_once(adapter, notification(), tokens))


async def send_each(adapter: VendorAdapter, tokens: list[str]) -> list[TokenResult]:
    """One send() per token, one after the other, through one open adapter."""
    await adapter.open()
    try:
        return [(await adapter.send(notification(), [t]))[0] for t in tokens]
    finally:
        await adapter.aclose()


@pytest.fixture
def admin(simulator_admin: SimulatorAdmin) -> SimulatorAdmin:
    return simulator_admin


# ---- receipts ------------------------------------------------------------------------------------

class Receiver:
    """A local HTTP endpoint that keeps every POST it gets: (content-type, body)."""

    def __init__(self) -> None:
        posts: list[tuple[str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's method name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                posts.append((self.headers.get("content-type", ""), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.posts = posts
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/receipts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int = 1, timeout_s: float = 6.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _form_json(body: bytes, field: str) -> Any:
    return json.loads(parse_qs(body.decode())[field][0])


def xiaomi_receipts(body: bytes) -> list[tuple[int, str, list[str]]]:
    return [(r["type"], r["param"], r["targets"].split(",")) for r in _form_json(body, "data").values()]


def oppo_receipts(body: bytes) -> list[tuple[int, str, list[str]]]:
    kinds = {"push_arrive": 1, "regid_invalid": 16}
    return [(kinds[e["eventType"]], e["param"], e["registrationIds"].split(",")) for e in json.loads(body)]


def vivo_receipts(body: bytes) -> list[tuple[int, str, list[str]]]:
    return [(r["ackType"], r["param"], r["targets"].split(",")) for r in json.loads(body).values()]


def meizu_receipts(body: bytes) -> list[tuple[int, str, list[str]]]:
    return [(r["type"], r["param"], r["targets"]) for r in _form_json(body, "cb").values()]


RECEIPTS = [(XIAOMI, 3, xiaomi_receipts), (OPPO, 3, oppo_receipts), (VIVO, 1, vivo_receipts),
            (MEIZU, 3, meizu_receipts)]


@pytest.mark.parametrize(("h", "count", "decode"), RECEIPTS, ids=[h.vendor.value for h, _, _ in RECEIPTS])
def test_delivery_receipts_name_the_message_and_the_accepted_tokens(
        simulators: Settings, admin: SimulatorAdmin, receiver: Receiver, h: VendorHarness, count: int,
        decode: Callable[[bytes], list[tuple[int, str, list[str]]]]) -> None:
    admin.configure(vendor=h.vendor.value, receipt_url=receiver.url)
    tokens = [h.valid_token("7ec") for _ in range(count)]
    note = notification()
    config = simulator_config(simulators, h.vendor.value, callback_url=receiver.url)
    results = asyncio.run(send_once(create_adapter(h.vendor, config), note, tokens))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    [(_, body)] = receiver.wait()
    assert decode(body) == [(1, note.msg_id, tokens)]


def test_xiaomi_reports_invalid_targets_as_receipt_type_16(simulators: Settings, admin: SimulatorAdmin,
                                                           receiver: Receiver) -> None:
    good, dead = XIAOMI.valid_token("16a"), XIAOMI.valid_token("16b")
    admin.configure(vendor="xiaomi", receipt_url=receiver.url, unregistered_tokens=[dead])
    config = simulator_config(simulators, "xiaomi", callback_url=receiver.url)
    results = asyncio.run(send_once(create_adapter(Vendor.XIAOMI, config), notification(), [good, dead]))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.INVALID_TOKEN]
    posts = receiver.wait(2)
    receipts = sorted(r for _, body in posts for r in xiaomi_receipts(body))
    assert [(kind, targets) for kind, _, targets in receipts] == [(1, [good]), (16, [dead])]


# ---- vendor-specific outcomes --------------------------------------------------------------------

def test_meizu_notification_switch_off_is_rejected_with_its_own_reason(simulators: Settings,
                                                                        admin: SimulatorAdmin) -> None:
    on, off = MEIZU.valid_token("0ff"), MEIZU.valid_token("0ff")
    admin.configure(vendor="meizu", switched_off_tokens=[off])
    first, second = send(simulators, MEIZU, [on, off])
    assert first.outcome is Outcome.ACCEPTED
    assert (second.outcome, second.code, second.reason) == (Outcome.REJECTED, "110005", "notification_switch_off")


@pytest.mark.parametrize(("h", "code"), [(OPPO, "33"), (VIVO, "10070"), (MEIZU, "110019")],
                         ids=["oppo", "vivo", "meizu"])
def test_daily_caps_are_throttled_until_midnight_china_time(simulators: Settings, admin: SimulatorAdmin,
                                                            h: VendorHarness, code: str) -> None:
    admin.configure(vendor=h.vendor.value, daily_quota=2)
    tokens = [h.valid_token("da1") for _ in range(2)]
    assert {r.outcome for r in send(simulators, h, tokens)} == {Outcome.ACCEPTED}
    [capped] = send(simulators, h, [h.valid_token("da1")])
    expected = seconds_until_china_hour(time.time())
    assert (capped.outcome, capped.code) == (Outcome.THROTTLED, code)
    assert capped.retry_after_s is not None and abs(capped.retry_after_s - expected) < 30


def test_meizu_quota_per_second_throttles_the_excess_requests(simulators: Settings, admin: SimulatorAdmin) -> None:
    admin.configure(vendor="meizu", quota_per_s=2)
    adapter = create_adapter(Vendor.MEIZU, simulator_config(simulators, "meizu"))
    results = asyncio.run(send_each(adapter, [MEIZU.valid_token("9a5") for _ in range(12)]))
    outcomes = Counter(r.outcome for r in results)
    assert outcomes[Outcome.THROTTLED] >= 2 and outcomes[Outcome.ACCEPTED] >= 2, outcomes
    assert {r.code for r in results if r.outcome is Outcome.THROTTLED} == {"110010"}


def test_umeng_rejects_a_stale_timestamp(simulators: Settings, admin: SimulatorAdmin) -> None:
    adapter = UmengAdapter(simulator_config(simulators, "umeng"), clock=lambda: time.time() - 3600)
    [result] = asyncio.run(send_once(adapter, notification(), [UMENG.valid_token("57a")]))
    assert (result.outcome, result.code) == (Outcome.REJECTED, "2028")


# ---- batching and local checks -------------------------------------------------------------------

def test_tokens_beyond_max_batch_go_in_several_requests_in_order(simulators: Settings, admin: SimulatorAdmin) -> None:
    prefix = f"c4a{uuid.uuid4().hex[:8]}"  # "c4a" alone: a random token of another test may start with it
    tokens = [MEIZU.valid_token(prefix) for _ in range(250)]
    admin.configure(vendor="meizu", unregistered_tokens=tokens[150:151])
    results = send(simulators, MEIZU, tokens)
    assert [r.token for r in results] == tokens
    assert [i for i, r in enumerate(results) if r.outcome is not Outcome.ACCEPTED] == [150]
    assert len({r.vendor_msg_id for r in results if r.outcome is Outcome.ACCEPTED}) == 3  # 100 + 100 + 50
    assert admin.stats(prefix)["received"] == 250


def test_a_token_holding_the_list_separator_is_invalid_and_never_sent(simulators: Settings,
                                                                       admin: SimulatorAdmin) -> None:
    prefix = uuid.uuid4().hex[:12]  # its own: random tokens of other tests never share it
    good = XIAOMI.valid_token(prefix)
    results = send(simulators, XIAOMI, [good, f"{prefix}a,{prefix}b"])
    assert [(r.outcome, r.reason) for r in results] == [(Outcome.ACCEPTED, ""),
                                                       (Outcome.INVALID_TOKEN, "MalformedToken")]
    assert admin.stats(prefix)["received"] == 1


def test_simulator_records_the_vendor_message_id_and_payload(simulators: Settings, admin: SimulatorAdmin) -> None:
    token = XIAOMI.valid_token("9b0")
    note = notification(data={"order": "42"})
    config = simulator_config(simulators, "xiaomi")
    [result] = asyncio.run(send_once(create_adapter(Vendor.XIAOMI, config), note, [token]))
    [record] = admin.accepted(token, payloads=True)["records"]
    assert record["msg_id"] == result.vendor_msg_id
    assert json.loads(record["payload"]["payload"]) == {"order": "42", "msg_id": note.msg_id}
    assert (record["payload"]["title"], record["payload"]["description"]) == ("Hello", "World")
