"""OAuth2 access tokens for vendor APIs: fetch at a token endpoint, cache, refresh early, drop on 401.

Shared by FCM (JWT-bearer grant with a service-account key) and HMS / Honor (client-credentials
grant). A failed fetch raises `TokenError`, which carries the `Outcome` every token of the batch
gets: 429 -> throttled, 5xx / transport / malformed reply -> unavailable, other 4xx (bad client
id, secret or key) -> rejected, because retrying cannot fix configuration.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from pushpipe.connectors.base import Outcome, TokenResult
from pushpipe.connectors.http import failure_code, failure_reason, json_object, parse_retry_after

Clock = Callable[[], float]
CLIENT_CREDENTIALS = "client_credentials"


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # clock time


class TokenError(Exception):
    """The token endpoint refused or failed; every token of the batch gets `outcome`."""

    def __init__(self, outcome: Outcome, code: str, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.outcome, self.code, self.reason, self.retry_after_s = outcome, code, reason, retry_after_s

    def result(self, token: str) -> TokenResult:
        return TokenResult(token, self.outcome, self.code, self.reason, self.retry_after_s)


Fetch = Callable[[], Awaitable[AccessToken]]


class TokenCache:
    """One access token, fetched on first use and again `refresh_margin_s` before it expires.

    Concurrent callers share one fetch. A failed fetch is not cached: the next get() tries again.
    """

    def __init__(self, fetch: Fetch, *, clock: Clock, refresh_margin_s: float) -> None:
        self._fetch, self._clock, self._margin = fetch, clock, refresh_margin_s
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def current(self) -> str:
        return self._token.value if self._token else ""

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._token.expires_at - self._margin

    async def get(self) -> str:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    self.fetches += 1
                    self._token = await self._fetch()
        assert self._token is not None
        return self._token.value

    def invalidate(self, stale: str) -> bool:
        """Drop `stale` if it is still current (many in-flight 401s cause one refresh)."""
        if self._token is None or self._token.value != stale:
            return False
        self._token = None
        return True


# ---- token endpoint ------------------------------------------------------------------------------

def _error_reason(doc: Mapping[str, object], body: bytes) -> str:
    parts = [str(doc[k]) for k in ("error", "error_description") if doc.get(k) not in (None, "")]
    return ": ".join(parts) if parts else body[:200].decode(errors="replace")


def token_from_response(status: int, headers: Mapping[str, str], body: bytes, now: float) -> AccessToken:
    """The AccessToken in a token-endpoint reply, or TokenError with the outcome it implies."""
    doc = json_object(body)
    if status == 200:
        value, expires_in = doc.get("access_token"), doc.get("expires_in", 3600)
        if isinstance(value, str) and value and isinstance(expires_in, int | float | str):
            try:
                return AccessToken(value, now + float(expires_in))
            except ValueError:
                pass
        raise TokenError(Outcome.UNAVAILABLE, "200", "token endpoint: malformed reply")
    reason = f"token endpoint: {_error_reason(doc, body)}"
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    if status == 429:
        raise TokenError(Outcome.THROTTLED, str(status), reason, retry_after)
    if status >= 500:
        raise TokenError(Outcome.UNAVAILABLE, str(status), reason, retry_after)
    raise TokenError(Outcome.REJECTED, str(status), reason)


async def request_token(client: httpx.AsyncClient, url: str, form: Mapping[str, str], clock: Clock) -> AccessToken:
    """POST a form to a token endpoint; TokenError on any failure (never an httpx exception)."""
    try:
        resp = await client.post(url, data=dict(form), headers={"accept": "application/json"})
    except (httpx.HTTPError, OSError) as exc:
        raise TokenError(Outcome.UNAVAILABLE, failure_code(exc), f"token endpoint: {failure_reason(exc)}") from exc
    return token_from_response(resp.status_code, resp.headers, resp.content, clock())


def client_credentials_form(client_id: str, client_secret: str) -> dict[str, str]:
    return {"grant_type": CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": client_secret}


def client_credentials(client: httpx.AsyncClient, url: str, client_id: str, client_secret: str,
                       clock: Clock) -> Fetch:
    """A Fetch for the client-credentials grant (HMS, Honor)."""
    form = client_credentials_form(client_id, client_secret)
    return lambda: request_token(client, url, form, clock)
