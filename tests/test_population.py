"""The simulated population: who gets a push, when, opens and clicks it, decided the same way every time; what
each vendor says of it; and the apps' SDK posts (APNs and FCM: the app's ack) through the real receipt gateway."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pushpipe.config import load
from pushpipe.gateway import app as gateway_app
from pushpipe.gateway import callbacks, signing
from pushpipe.schemas import codec
from pushpipe.simulators import apns, fcm, population, receipts
from pushpipe.simulators.batchsim import SWITCHED_OFF, Receipt
from pushpipe.simulators.common import SimConfig
from pushpipe.simulators.hms import HmsSimulator
from pushpipe.simulators.meizu import MeizuSimulator
from pushpipe.simulators.xiaomi import XiaomiSimulator
from test_gateway import FakeOutbox

CALLBACK = "http://gw/r/xiaomi/app/sig"


def test_shares_follow_the_configured_rates_and_repeat() -> None:
    config = SimConfig(delivery_rate=0.8, open_rate=0.25, click_rate=0.5)
    fates = [population.fate(config, "m", f"t{i}") for i in range(20_000)]
    delivered, opened, clicked = (sum(f[n] for f in fates) / len(fates) for n in range(3))
    assert abs(delivered - 0.8) < 0.02 and abs(opened - 0.2) < 0.02 and abs(clicked - 0.1) < 0.02
    assert all(f.delivered or not f.opened for f in fates) and all(f.opened or not f.clicked for f in fates)
    assert fates == [population.fate(config, "m", f"t{i}") for i in range(20_000)], "the same fate every time"


def test_a_brand_has_its_own_delivery_rate_and_delay_and_other_brands_the_vendors() -> None:
    config = SimConfig(delivery_rate=1.0, delivery_delay_ms=100).updated(
        {"brands": {"Xiaomi": {"delivery_rate": 0.5, "delivery_delay_ms": 2000}, "oppo": {"delivery_delay_ms": 5}}})
    tokens = [f"t{i}" for i in range(4000)]
    xiaomi = [population.fate(config, "m", t, "xiaomi") for t in tokens]
    assert {f.delay_ms for f in xiaomi} == {2000} and 0.45 < sum(f.delivered for f in xiaomi) / len(tokens) < 0.55
    assert [f.delivered for f in xiaomi] == [population.fate(SimConfig(delivery_rate=0.5), "m", t).delivered for t in tokens]
    assert {(f.delivered, f.delay_ms) for t in tokens for f in [population.fate(config, "m", t, "oppo")]} == {(True, 5)}, \
        "a brand that sets only its delay keeps the vendor's rate"
    assert {(f.delivered, f.delay_ms) for t in tokens for f in [population.fate(config, "m", t, b) for b in ("", "huawei")]} == {(True, 100)}


def test_offline_devices_are_the_same_every_time_and_get_their_pushes_offline_ms_late() -> None:
    config = SimConfig(delivery_delay_ms=100, offline_rate=0.3, offline_ms=60_000)
    tokens = [f"t{i}" for i in range(10_000)]
    first, second = ([population.fate(config, m, t) for t in tokens] for m in ("m1", "m2"))
    offline = [t for t, f in zip(tokens, first, strict=True) if f.offline]
    assert 0.28 < len(offline) / len(tokens) < 0.32
    assert offline == [t for t, f in zip(tokens, second, strict=True) if f.offline], "the same devices for every message"
    assert all(f.delay_ms == (60_100 if f.offline else 100) and f.delivered for f in first + second)


def test_switched_off_devices_are_reached_but_never_delivered_nor_opened() -> None:
    config = SimConfig(delivery_rate=0.5, open_rate=1.0, switched_off_rate=0.25)
    tokens = [f"t{i}" for i in range(10_000)]
    fates = [population.fate(config, "m", t) for t in tokens]
    reached = [population.fate(SimConfig(delivery_rate=0.5), "m", t).delivered for t in tokens]
    assert [f.delivered or f.switched_off for f in fates] == reached, "notifications off changes what is said, not who is reached"
    assert not any(f.delivered and f.switched_off for f in fates) and [f.opened for f in fates] == [f.delivered for f in fates]
    off = [population.switched_off(config, t) for t in tokens]
    assert 0.23 < sum(off) / len(tokens) < 0.27
    assert [f.switched_off for f in fates] == [o and r for o, r in zip(off, reached, strict=True)]
    assert all(off[n] for n, t in enumerate(tokens) if population.fate(config, "m2", t).switched_off), "the same devices for every message"


def test_a_vendor_sends_receipts_only_for_what_reached_the_devices() -> None:
    sim = XiaomiSimulator()
    sim.state.config = SimConfig(delivery_rate=0.5)
    tokens = tuple(f"t{i}" for i in range(1000))
    kept = [r for _, r in sim.reached((Receipt(1, "x", "m", tokens, 0.0, CALLBACK), Receipt(16, "x", "m", ("dead",), 0.0)))]
    delivered = [t for r in kept if r.kind == 1 for t in r.tokens]
    assert delivered == [t for t in tokens if population.fate(sim.state.config, "m", t).delivered] and 400 < len(delivered) < 600
    assert [r.tokens for r in kept if r.kind == 16] == [("dead",)], "an invalid target is reported whatever the population"
    assert population.app_of_callback(CALLBACK) == "app" and population.app_of_callback("http://x/cb") == ""


def test_xiaomi_receipts_go_when_each_device_got_the_push_and_say_when_its_notifications_are_off() -> None:
    sim = XiaomiSimulator()
    sim.state.config = SimConfig(delivery_rate=0.9, delivery_delay_ms=100, switched_off_rate=0.2, offline_rate=0.1,
                                 offline_ms=5000).updated({"brands": {"Redmi": {"delivery_delay_ms": 700}}})
    tokens = tuple(f"tok{i:05d}" for i in range(600))
    sim.state.devices.register({t: {"brand": "Redmi"} for t in tokens[:300]})
    fates = {t: population.fate(sim.state.config, "m", t, "redmi" if n < 300 else "") for n, t in enumerate(tokens)}
    timed = sim.reached((Receipt(1, "x", "m", tokens, 10.0, CALLBACK),))
    said = {t: (r.kind, delay, r.at) for delay, r in timed for t in r.tokens}
    expected = {t: (1 if f.delivered else SWITCHED_OFF, f.delay_ms / 1000, 10.0 + f.delay_ms / 1000)
                for t, f in fates.items() if f.delivered or f.switched_off}
    assert said == expected and {d for d, _ in timed} == {0.1, 0.7, 5.1, 5.7}
    assert 60 < sum(k == SWITCHED_OFF for k, _, _ in said.values()) < 150
    heard = [h for body, content_type in sim.encode_receipts([r for _, r in timed])
             for h in callbacks.parse("xiaomi", body, content_type, "app")[0]]
    assert sorted((h.token, h.kind) for h in heard) == sorted(
        (t, "delivered" if kind == 1 else "switched_off") for t, (kind, _, _) in expected.items()), "as the gateway reads them"


def test_meizu_answers_110005_for_the_devices_with_notifications_off() -> None:
    sim = MeizuSimulator()
    sim.state.config = SimConfig(switched_off_rate=0.3)
    push_ids = [f"{n:012d}" for n in range(200)]
    reply = sim.deliver({"noticeBarInfo": {"title": "t", "content": "c"}}, push_ids, 0.0)
    off = [t for t in push_ids if population.switched_off(sim.state.config, t)]
    assert json.loads(reply.body)["value"] == {"110005": off} and 40 < len(off) < 80
    assert [t for r in reply.receipts for t in r.tokens] == [t for t in push_ids if t not in off]


def test_hms_statuses_go_when_each_device_got_the_push_and_none_for_notifications_off() -> None:
    sim = HmsSimulator()
    sim.state.config = SimConfig(delivery_delay_ms=50, switched_off_rate=0.2).updated(
        {"brands": {"huawei": {"delivery_rate": 0.5, "delivery_delay_ms": 300}}})
    tokens = [f"hms-token-{n:04d}" for n in range(400)]
    sim.state.devices.register({t: {"brand": "HUAWEI"} for t in tokens[::2]})
    statuses = tuple(receipts.receipt("10000001", "app|m1", t, "req", 100.0) for t in tokens)
    timed = sim.reached(statuses)
    fates = [population.fate(sim.state.config, "m1", t, "huawei" if n % 2 == 0 else "") for n, t in enumerate(tokens)]
    assert [(s["token"], delay, s["timestamp"]) for delay, s in timed] == [
        (t, f.delay_ms / 1000, 100_000 + int(f.delay_ms)) for t, f in zip(tokens, fates, strict=True) if f.delivered]
    assert {f.delay_ms for f in fates if f.delivered} == {50, 300} and any(f.switched_off for f in fates)


# ---- the apps' SDK posts, through the real receipt gateway (Kafka stood in for) --------------------------------

APP = "shop"


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[httpx.AsyncBaseTransport, FakeOutbox]:
    """The receipt gateway as an ASGI app, its key where the simulated apps read theirs from."""
    key_file = tmp_path / "receipt.key"
    key = signing.load_key(key_file, create=True)
    monkeypatch.setenv(population.SDK_KEY_FILE_ENV, str(key_file))
    outbox = FakeOutbox()
    return httpx.ASGITransport(app=gateway_app.create(load(home=tmp_path), key, outbox)), outbox


def written(outbox: FakeOutbox) -> list[tuple[str, str, str, str]]:
    """(app, msg, token, kind) of every Receipt the gateway wrote."""
    records = [r for topic, _, v in outbox.sent if topic == "push.receipts" for r in codec.decode("ReceiptBatch", v)["receipts"]]
    return sorted((r["app_id"], r["msg_id"], r["token"], r["kind"]) for r in records)


def population_apps(sim: Any, transport: httpx.AsyncBaseTransport, **config: Any) -> None:
    sim.state.config = SimConfig(sdk_url="http://gateway.test").updated(config)
    sim.users.transport, sim.users.interval_s = transport, 0.01


def test_apns_registered_tokens_are_acked_by_their_app_then_opened(tmp_path: Path, gateway: tuple[Any, FakeOutbox]) -> None:
    transport, outbox = gateway
    creds = apns.ensure_credentials(tmp_path / "apns")
    sim = apns.ApnsSimulator()
    sim.register_credentials(creds)
    population_apps(sim, transport, open_rate=1.0, open_delay_ms=30,
                    brands={"apple": {"delivery_delay_ms": 50}, "nokia": {"delivery_rate": 0}})
    reached, never, unknown = "a1" * 32, "b2" * 32, "c3" * 32
    sim.state.devices.register({reached: {"app_id": APP, "brand": "Apple"}, never: {"app_id": APP, "brand": "nokia"}})
    bearer = jwt.encode({"iss": creds.team_id, "iat": int(time.time())}, creds.key_path.read_text(), algorithm="ES256",
                        headers={"kid": creds.key_id})
    alert = {"msg_id": "m1", "aps": {"alert": {"title": "t", "body": "b"}, "mutable-content": 1}}
    background = {"msg_id": "m2", "aps": {"content-available": 1}}

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="https://apns.test") as client:
            statuses = []
            for token, payload, push_type in [(t, alert, "alert") for t in (reached, never, unknown)] + [(reached, background, "background")]:
                headers = {"authorization": f"bearer {bearer}", "apns-topic": creds.topic, "apns-push-type": push_type}
                statuses.append((await client.post(f"/3/device/{token}", json=payload, headers=headers)).status_code)
        await sim.users.drained()
        return statuses

    sent_at = time.time()
    assert asyncio.run(scenario()) == [200] * 4
    assert written(outbox) == [(APP, "m1", reached, "delivered"), (APP, "m1", reached, "opened")]
    assert (sim.users.posted, sim.users.failed) == (2, 0)
    ts = {r["kind"]: r["ts"] for _, _, v in outbox.sent for r in codec.decode("ReceiptBatch", v)["receipts"]}
    assert ts["delivered"] >= int((sent_at + 0.05) * 1000) and 29 <= ts["opened"] - ts["delivered"] <= 31, "the brand's delay, then the open's"


def test_fcm_registered_tokens_are_acked_and_only_notifications_are_opened(gateway: tuple[Any, FakeOutbox]) -> None:
    transport, outbox = gateway
    sim = fcm.FcmSimulator()
    population_apps(sim, transport, open_rate=1.0, click_rate=1.0)
    token, unknown = "fcm-token-" + "x" * 30, "fcm-token-" + "y" * 30
    sim.state.devices.register({token: {"app_id": APP, "brand": "samsung"}})
    bearer = sim.access_tokens.issue("proj")["access_token"]
    messages = [{"token": token, "data": {"msg_id": "m1"}, "notification": {"title": "t", "body": "b"}},
                {"token": token, "data": {"msg_id": "m2"}}, {"token": unknown, "data": {"msg_id": "m3"}, "notification": {"title": "t"}}]

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="https://fcm.test") as client:
            statuses = [(await client.post("/fcm/v1/projects/proj/messages:send", json={"message": m},
                                           headers={"authorization": f"Bearer {bearer}"})).status_code for m in messages]
        await sim.users.drained()
        return statuses

    assert asyncio.run(scenario()) == [200] * 3
    assert written(outbox) == [(APP, "m1", token, "clicked"), (APP, "m1", token, "delivered"), (APP, "m1", token, "opened"),
                               (APP, "m2", token, "delivered")], "a data message is acked, not shown"


def test_no_sdk_url_means_no_posts_and_a_vendors_callback_app_comes_before_the_registered_one() -> None:
    apps = population.SimulatedApps(XiaomiSimulator().state)
    apps.state.devices.register({"t1": {"app_id": "registered"}, "t2": {"app_id": "registered"}})
    apps.state.config = SimConfig(open_rate=1.0)

    async def engage(app_id: str) -> list[tuple[str, str]]:
        apps.engage(app_id, "m", apps.fates("m", ["t1", "t2", "t3"]), time.time())
        queued = [(app, str(event["token"])) for _, _, app, event in apps._pending]
        apps._pending.clear()
        return queued

    assert asyncio.run(engage("from-callback")) == []
    apps.state.config = SimConfig(open_rate=1.0, sdk_url="http://gateway.test")
    assert asyncio.run(engage("from-callback")) == [("from-callback", "t1"), ("from-callback", "t2"), ("from-callback", "t3")]
    assert asyncio.run(engage("")) == [("registered", "t1"), ("registered", "t2")], "no app known: no events"
