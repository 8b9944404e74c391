"""The simulators' device registry and the population's config, through the admin API (an ASGI app, no port)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushpipe.schemas.keys import InvalidId
from pushpipe.simulators.common import Brand, SimConfig
from pushpipe.simulators.devices import NOBODY, Device, DeviceRegistry
from pushpipe.simulators.server import AdminApp, build_vendors


def test_the_registry_is_bounded_and_takes_a_registration_whole_or_not_at_all() -> None:
    registry = DeviceRegistry(limit=3)
    assert registry.register({"t1": {"app_id": "shop", "brand": "Xiaomi"}, "t2": {}}) == 2
    assert registry.get("t1") == Device("shop", "xiaomi") and registry.get("t2") == NOBODY == registry.get("t9")
    with pytest.raises(ValueError, match="at most 3"):
        registry.register({"t3": {}, "t4": {}})
    assert len(registry) == 2 and registry.get("t3") == NOBODY, "nothing of a refused registration is kept"
    assert registry.register({"t1": {"brand": "oppo"}, "t3": {}}) == 3, "a known token is replaced, not counted again"
    assert registry.get("t1") == Device("", "oppo")
    with pytest.raises(InvalidId):
        registry.register({"t5": {"app_id": "a|b"}})
    with pytest.raises(ValueError, match="expected"):
        registry.register({"t5": {"model": "x"}})
    assert registry.register({"t4": {}, "t5": {}, "t6": {}}, clear=True) == 3 and registry.get("t1") == NOBODY


def test_brands_offline_and_switched_off_are_config_checked_like_the_rest() -> None:
    config = SimConfig().updated({"brands": {"Xiaomi": {"delivery_rate": "0.5"}, "vivo": {"delivery_delay_ms": 20}},
                                  "offline_rate": 0.1, "offline_ms": "3000", "switched_off_rate": 0.2})
    assert config.brands == {"xiaomi": Brand(0.5, None), "vivo": Brand(None, 20.0)}
    assert (config.offline_rate, config.offline_ms, config.switched_off_rate) == (0.1, 3000.0, 0.2)
    assert config.delivery("xiaomi") == (0.5, 0.0) and config.delivery("vivo") == (1.0, 20.0) and config.delivery("") == (1.0, 0.0)
    assert SimConfig().updated({"brands": config.to_json()["brands"]}).brands == config.brands, "GET /config's brands post back"
    for bad in ({"brands": {"x": {"delivery_rate": 2}}}, {"brands": {"x": {"open_rate": 1}}}, {"brands": ["x"]},
                {"offline_rate": -0.1}, {"offline_ms": -1}, {"switched_off_rate": 1.5}):
        with pytest.raises(ValueError):
            SimConfig().updated(bad)


def call(admin: AdminApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://admin.test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> AdminApp:
    state_dir: Path = tmp_path_factory.mktemp("sims")
    return AdminApp(build_vendors(state_dir), state_dir)


def test_devices_registered_through_the_admin_api_are_every_simulators(admin: AdminApp) -> None:
    devices = {"a1" * 32: {"app_id": "shop", "brand": "Apple"}, "fcm-token-1": {"app_id": "shop", "brand": "samsung"}}
    assert call(admin, "POST", "/devices", json={"devices": devices}).json() == {"devices": 2}
    assert call(admin, "GET", "/devices", params={"token": "a1" * 32}).json() == {"devices": 2, "device": {"app_id": "shop", "brand": "apple"}}
    assert call(admin, "GET", "/devices", params={"token": "nope"}).json() == {"devices": 2, "device": None}
    assert {v.state.devices.get("fcm-token-1") for v in admin.vendors.values()} == {Device("shop", "samsung")}
    refused = call(admin, "POST", "/devices", json={"devices": {"t": {"app_id": "not an app"}}})
    assert refused.status_code == 400 and "app_id" in refused.json()["error"]
    assert call(admin, "POST", "/reset", json={"vendor": "xiaomi"}).json() == {"ok": True}
    assert call(admin, "GET", "/devices").json() == {"devices": 2}, "one vendor's reset leaves the devices"
    call(admin, "POST", "/reset", json={"devices": False})
    assert call(admin, "GET", "/devices").json() == {"devices": 2}
    call(admin, "POST", "/reset")
    assert call(admin, "GET", "/devices").json() == {"devices": 0}, "a full reset forgets them"


def test_the_population_config_goes_through_the_admin_api(admin: AdminApp) -> None:
    answer = call(admin, "POST", "/config", json={"vendor": "fcm", "brands": {"Xiaomi": {"delivery_rate": 0.6, "delivery_delay_ms": 900}},
                                                  "offline_rate": 0.05, "offline_ms": 30_000, "switched_off_rate": 0.1})
    assert answer.status_code == 200
    shown = call(admin, "GET", "/config", params={"vendor": "fcm"}).json()["fcm"]
    assert shown["brands"] == {"xiaomi": {"delivery_rate": 0.6, "delivery_delay_ms": 900.0}}
    assert (shown["offline_rate"], shown["offline_ms"], shown["switched_off_rate"]) == (0.05, 30_000.0, 0.1)
    assert call(admin, "GET", "/config", params={"vendor": "apns"}).json()["apns"]["brands"] == {}
    bad = call(admin, "POST", "/config", json={"vendor": "fcm", "brands": {"xiaomi": {"delivery_rate": 7}}})
    assert bad.status_code == 400 and "rate must be within [0, 1]" in bad.json()["error"]
    call(admin, "POST", "/reset")
    assert call(admin, "GET", "/config", params={"vendor": "fcm"}).json()["fcm"]["brands"] == {}
