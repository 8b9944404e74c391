"""The devices and apps behind the simulated vendors, as a population: each accepted push reaches its device
with a configured probability and delay, and the app opens and clicks a configured share of what arrived,
posting those events to the receipt gateway as a real SDK would (SimConfig: delivery_rate, delivery_delay_ms,
open_rate, click_rate, open_delay_ms, sdk_url). Who is reached, opens or clicks is decided from a digest of
the message and the token, so a run can be predicted exactly (`fate`).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx

from pushpipe.gateway import signing
from pushpipe.simulators.common import SimConfig, post_ok

SDK_KEY_FILE_ENV = "PUSHPIPE_SIM_SDK_KEY_FILE"  # the receipt key, from which the simulated apps derive their SDK keys


class Fate(NamedTuple):
    delivered: bool
    opened: bool
    clicked: bool


def fate(config: SimConfig, msg_id: str, token: str) -> Fate:
    """What becomes of one accepted push on its device."""
    delivered = _share("delivered", msg_id, token) < config.delivery_rate
    opened = delivered and _share("opened", msg_id, token) < config.open_rate
    return Fate(delivered, opened, opened and _share("clicked", msg_id, token) < config.click_rate)


def _share(*parts: str) -> float:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def app_of_callback(url: str) -> str:
    """The app of a gateway callback URL (.../r/<vendor>/<app>/<sig>), "" for another URL."""
    parts = url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 4 and parts[-4] == "r" else ""


@dataclass
class SimulatedApps:
    """The apps on the devices: they post opened and clicked events to the gateway's SDK endpoint, batched."""

    interval_s: float = 0.5
    posted: int = 0
    failed: int = 0
    _pending: list[tuple[float, str, str, dict[str, object]]] = field(default_factory=list)  # (due, url, app, event)
    _task: asyncio.Task[None] | None = None

    def engage(self, config: SimConfig, app_id: str, msg_id: str, tokens: list[str], now: float) -> None:
        """The apps' opens and clicks of these delivered pushes, posted after open_delay_ms."""
        if not config.sdk_url or not app_id:
            return
        due = now + (config.delivery_delay_ms + config.open_delay_ms) / 1000
        for token in tokens:
            what = fate(config, msg_id, token)
            for kind, happened in (("opened", what.opened), ("clicked", what.clicked)):
                if happened:
                    event = {"msg_id": msg_id, "token": token, "kind": kind, "ts": int(due * 1000)}
                    self._pending.append((due, config.sdk_url, app_id, event))
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
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
