"""OAuth2 for the simulators (FCM, HMS, Honor): access tokens they issue and check, form parsing,
and dev credential files.

Every issued token advertises `expires_in` 3600, as the vendors do, but really lives for
`SimConfig.access_token_ttl_s` (default 3600): lower it to make tokens expire early, server-side,
so a client has to notice the 401 and fetch a new one. Token endpoints ignore the injected
faults (latency, throttling, outages): those model the push API.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl

from pushpipe.simulators.common import SimState

ADVERTISED_TTL_S = 3600
_MAX_ISSUED = 10_000

TokenStatus = Literal["ok", "missing", "invalid", "expired"]


class TokenCheck(NamedTuple):
    status: TokenStatus
    subject: str = ""  # who the token was issued to (project id, app id)


class AccessTokens:
    """Opaque bearer tokens issued by one simulator, each with the expiry it really enforces."""

    def __init__(self, state: SimState, clock: Callable[[], float]) -> None:
        self._state, self._clock = state, clock
        self._issued: dict[str, tuple[str, float]] = {}  # token -> (subject, expires_at)
        self.issued_count = 0

    def issue(self, subject: str) -> dict[str, Any]:
        """The token endpoint's 200 body for a new token issued to `subject`."""
        now = self._clock()
        if len(self._issued) >= _MAX_ISSUED:
            self._issued = {t: v for t, v in self._issued.items() if v[1] > now}
        token = secrets.token_urlsafe(32)
        self._issued[token] = (subject, now + self._state.config.access_token_ttl_s)
        self.issued_count += 1
        return {"access_token": token, "expires_in": ADVERTISED_TTL_S, "token_type": "Bearer"}

    def check(self, authorization: str | None) -> TokenCheck:
        scheme, _, token = (authorization or "").partition(" ")
        if not token or scheme.lower() != "bearer":
            return TokenCheck("missing")
        entry = self._issued.get(token.strip())
        if entry is None:
            return TokenCheck("invalid")
        subject, expires_at = entry
        return TokenCheck("expired" if self._clock() >= expires_at else "ok", subject)


def parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded; a repeated key keeps its last value."""
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def write_private(path: Path, text: str) -> None:
    """Write a credential file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def new_secret() -> str:
    return secrets.token_hex(32)


def new_numeric_id(prefix: str, digits: int) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(digits))
