"""Who is calling: an app's id (X-Pushpipe-App) and secret (Authorization: Bearer <secret>), checked against the registry.

A secret is checked with scrypt (~50 ms, on a worker thread) the first time a process sees it; then its HMAC under
a key this process made at start is kept beside the app's hash, and later requests compare HMACs (a microsecond,
constant time). A rotated secret changes the app's hash, which drops what was kept. Checks the slow way are limited
per app (SLOW_CHECKS_PER_S), so wrong secrets cannot keep the server hashing: past it the answer is 429.
"""
from __future__ import annotations

import asyncio
import hmac
import os
from dataclasses import dataclass

from pushpipe.ingress import apps
from pushpipe.ingress.limits import Buckets
from pushpipe.schemas.apps import App, AppStore

SLOW_CHECKS_PER_S = 5.0
APP_HEADER = "x-pushpipe-app"
BEARER = "bearer "


@dataclass(frozen=True)
class Refusal:
    status: int  # 401, or 429 when too many secrets were checked the slow way
    error: str
    reason: str
    retry_after_s: float = 0.0


class Authenticator:
    def __init__(self, store: AppStore, slow_checks: Buckets | None = None) -> None:
        self.store = store
        self._key = os.urandom(32)
        self._known: dict[str, tuple[str, bytes]] = {}  # app id -> (its secret hash, HMAC of the secret that matched it)
        self._slow_checks = slow_checks or Buckets()

    async def caller(self, app_header: str | None, authorization: str | None) -> App | Refusal:
        """The app whose credentials these are, or why not."""
        if not app_header or not authorization or not authorization[:len(BEARER)].lower() == BEARER:
            return Refusal(401, "unauthenticated", "send X-Pushpipe-App: <app> and Authorization: Bearer <secret>")
        app, secret = self.store.get(app_header), authorization[len(BEARER):].strip()
        if app is None:
            return Refusal(401, "unauthenticated", "unknown app or wrong secret")
        mac = hmac.digest(self._key, secret.encode(), "sha256")  # one-shot, in C: a third of hmac.new(...).digest()
        known = self._known.get(app.app_id)
        if known is not None and known[0] == app.secret_hash and hmac.compare_digest(known[1], mac):
            return app
        wait_s = self._slow_checks.take(app.app_id, SLOW_CHECKS_PER_S)
        if wait_s:
            return Refusal(429, "too_many_attempts", "too many secrets checked for this app: try again later", wait_s)
        if not await asyncio.to_thread(apps.secret_matches, app.secret_hash, secret):
            return Refusal(401, "unauthenticated", "unknown app or wrong secret")
        self._known[app.app_id] = (app.secret_hash, mac)
        return app
