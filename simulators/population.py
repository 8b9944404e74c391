"""The devices and apps behind the simulated vendors, as a population. An accepted push

- reaches its device with the delivery_rate, and after the delivery_delay_ms, of the device's brand
  (SimConfig.brands; the brand its token was registered with, simulators/devices.py), else the vendor-wide ones;
- reaches it offline_ms later still if the device is one of the offline_rate share that are offline for a while;
- on a device with notifications off (the switched_off_rate share) is reported with the vendor's code for that
  where it has one (Xiaomi: a type 1 receipt with barStatus "Disable"; Meizu: 110005 in the send's answer,
  simulators/meizu.py), else it is simply not delivered; no app opens it;
- is opened by the app open_delay_ms after it arrived with the open_rate, and clicked through with the
  click_rate of the opens.

The apps post their events to the receipt gateway's SDK endpoint as a real SDK would (sdk_url, header
X-Pushpipe-Key): "opened" and "clicked"; and for APNs and FCM, which send no receipts, "delivered" when a push
arrives (an iOS Notification Service Extension's ack; on Android, the FCM SDK's onMessageReceived), for tokens
registered with their app, as such a send names none. Which devices are offline or switched off is decided
from a digest of the token (the same devices every time), who is reached, opens and clicks from a digest of
the message and the token, so a run can be predicted exactly (`fate`).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx

from pushpipe.gateway import signing
from pushpipe.simulators.common import SimConfig, SimState, post_ok

SDK_KEY_FILE_ENV = "PUSHPIPE_SIM_SDK_KEY_FILE"  # the receipt key, from which the simulated apps derive their SDK keys


class Fate(NamedTuple):
    delivered: bool  # reached the device, notifications on: a delivery receipt (APNs, FCM: the app's ack)
    opened: bool
    clicked: bool
    delay_ms: float  # from acceptance to the device: the brand's (else the vendor's) delay, + offline_ms if offline
    switched_off: bool  # reached the device, whose notifications are off: the vendor's code for that, if it has one
    offline: bool  # the device is one of those offline for a while


def fate(config: SimConfig, msg_id: str, token: str, brand: str = "") -> Fate:
    """What becomes of one accepted push on its device, of this brand ("" = none: the vendor-wide rate and delay)."""
    rate, delay_ms = config.delivery(brand)
    offline = config.offline_rate > 0 and _share("offline", token) < config.offline_rate
    reached = _share("delivered", msg_id, token) < rate
    off = reached and switched_off(config, token)
    delivered = reached and not off
    opened = delivered and _share("opened", msg_id, token) < config.open_rate
    clicked = opened and _share("clicked", msg_id, token) < config.click_rate
    return Fate(delivered, opened, clicked, delay_ms + (config.offline_ms if offline else 0.0), off, offline)


def switched_off(config: SimConfig, token: str) -> bool:
    """Whether the device has its notifications off (decided from the token: the same device every time)."""
    return config.switched_off_rate > 0 and _share("switched_off", token) < config.switched_off_rate


def _share(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def app_of_callback(url: str) -> str:
    """The app of a gateway callback URL (.../r/<vendor>/<app>/<sig>), "" for another URL."""
    parts = url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 4 and parts[-4] == "r" else ""


@dataclass
class SimulatedApps:
    """The apps on one vendor simulator's devices: they post their SDK events to the gateway, batched."""

    state: SimState  # the simulator's: its config and the device registry, read at each push
    interval_s: float = 0.5
    transport: httpx.AsyncBaseTransport | None = None  # where the posts go (tests); None = the network
    posted: int = 0
    failed: int = 0
    _pending: list[tuple[float, str, str, dict[str, object]]] = field(default_factory=list)  # (due, url, app, event)
    _task: asyncio.Task[None] | None = None

    def fates(self, msg_id: str, tokens: Iterable[str]) -> dict[str, Fate]:
        """The fate of the push to each token, on a device of the brand the token was registered with."""
        config, devices = self.state.config, self.state.devices
        return {t: fate(config, msg_id, t, devices.get(t).brand) for t in tokens}

    def has_app(self, token: str) -> bool:
        """Whether this device's app posts SDK events without a vendor naming the app: sdk_url is set and the
        token was registered with its app (APNs and FCM sends name no app)."""
        return bool(self.state.config.sdk_url and self.state.devices.get(token).app_id)

    def engage(self, app_id: str, msg_id: str, fates: Mapping[str, Fate], now: float, ack: bool = False, shown: bool = True) -> None:
        """The apps' events about these pushes, accepted at `now`: with `ack`, "delivered" when each arrived (APNs and
        FCM send no receipts: the app acks); if `shown` (a visible notification), "opened" open_delay_ms later, and
        "clicked". The app is `app_id` (from the vendor's callback), else the one the token was registered with;
        none, or no sdk_url: no events."""
        config = self.state.config
        if not config.sdk_url:
            return
        for token, what in fates.items():
            app = app_id or self.state.devices.get(token).app_id
            if not (app and what.delivered):
                continue
            arrived = now + what.delay_ms / 1000
            opened = arrived + config.open_delay_ms / 1000
            events = [("delivered", arrived)] if ack else []
            if shown:
                events += [(kind, opened) for kind, happened in (("opened", what.opened), ("clicked", what.clicked)) if happened]
            for kind, due in events:
                self._pending.append((due, config.sdk_url, app, {"msg_id": msg_id, "token": token, "kind": kind, "ts": int(due * 1000)}))
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def acknowledge(self, msg_id: str, token: str, now: float, shown: bool = True) -> None:
        """A push an APNs or FCM simulator accepted: the app's ack if it arrives, then its opens and clicks."""
        self.engage("", msg_id, self.fates(msg_id, [token]), now, ack=True, shown=shown)

    async def drained(self) -> None:
        """Return once every queued event was posted (or dropped)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _drain(self) -> None:
        async with httpx.AsyncClient(timeout=5.0, transport=self.transport) as client:
            while self._pending:
                await asyncio.sleep(self.interval_s)
                now = time.time()
                due = [p for p in self._pending if p[0] <= now]
                self._pending = [p for p in self._pending if p[0] > now]
                batches: dict[tuple[str, str], list[dict[str, object]]] = {}
                for _, url, app_id, event in due:
                    batches.setdefault((url, app_id), []).append(event)
                for (url, app_id), events in batches.items():
                    await self._post(client, url, app_id, events)

    async def _post(self, client: httpx.AsyncClient, url: str, app_id: str, events: list[dict[str, object]]) -> None:
        headers = {"content-type": "application/json", "x-pushpipe-key": sdk_key(app_id)}
        if await post_ok(client, f"{url.rstrip('/')}/v1/sdk/{app_id}/events", json.dumps({"events": events}).encode(), headers):
            self.posted += 1
        else:
            self.failed += 1


def sdk_key(app_id: str) -> str:
    """The app's SDK key, as the app was given it (from the gateway's key, PUSHPIPE_SIM_SDK_KEY_FILE)."""
    key = _receipt_key(os.environ.get(SDK_KEY_FILE_ENV, ""))
    return signing.sdk_key(key, app_id) if key else ""


@functools.cache
def _receipt_key(path: str) -> bytes:
    """The gateway's key, read once (not on every post)."""
    return signing.load_key(Path(path)) if path else b""
