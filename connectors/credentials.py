"""The one credential cache of the adapters: OAuth access tokens (FCM, HMS, Honor), vendor auth tokens
(OPPO, vivo) and the APNs provider JWT are all "a value, kept until shortly before it expires".

`CredentialCache` holds the value, when it was obtained and when it expires, and:
- refreshes `refresh_margin_s` before the expiry, and when the clock went backwards (its age is unknown);
- `invalidate(stale)` drops the value only if it is still the current one (many in-flight 401s cause
  one refresh, and a late 401 for an old value does not drop the new one);
- concurrent async callers share one fetch; a failed fetch is not cached.
`AccessTokenCache` and `AuthTokenCache` bind an async fetch to it; the APNs provider token mints synchronously.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # clock time


Fetch = Callable[[], Awaitable[AccessToken]]
Mint = Callable[[float], AccessToken]  # now -> a credential made locally (no network)


class CredentialCache:
    """One credential: obtained on first use and again `refresh_margin_s` before it expires."""

    def __init__(self, *, clock: Clock, refresh_margin_s: float = 0.0) -> None:
        self._clock, self._margin = clock, refresh_margin_s
        self._token: AccessToken | None = None
        self._obtained_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def current(self) -> str:
        return self._token.value if self._token else ""

    @property
    def issued_at(self) -> float:
        return self._obtained_at

    def _fresh(self) -> bool:
        now = self._clock()
        return self._token is not None and self._obtained_at <= now < self._token.expires_at - self._margin

    def _keep(self, token: AccessToken, obtained_at: float) -> str:
        self._token, self._obtained_at = token, obtained_at
        return token.value

    async def obtain(self, fetch: Fetch) -> str:
        """The cached value, or a new one from `fetch` (concurrent callers share one fetch)."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    started, self.fetches = self._clock(), self.fetches + 1
                    return self._keep(await fetch(), started)
        return self.current

    def obtain_now(self, mint: Mint) -> str:
        """The cached value, or a new one from `mint` (synchronous: nothing to wait for)."""
        if not self._fresh():
            now, self.fetches = self._clock(), self.fetches + 1
            return self._keep(mint(now), now)
        return self.current

    def invalidate(self, stale: str) -> bool:
        """Drop `stale` if it is still current; True if it was."""
        if self._token is None or self._token.value != stale:
            return False
        self._token = None
        return True


class AccessTokenCache(CredentialCache):
    """An access token whose endpoint says when it expires (OAuth2 `expires_in`)."""

    def __init__(self, fetch: Fetch, *, clock: Clock, refresh_margin_s: float) -> None:
        super().__init__(clock=clock, refresh_margin_s=refresh_margin_s)
        self._fetch = fetch

    async def get(self) -> str:
        return await self.obtain(self._fetch)


class AuthTokenCache(AccessTokenCache):
    """A vendor auth token (an access token) without a stated expiry (OPPO, vivo): kept `refresh_s` from when it was fetched."""

    def __init__(self, fetch: Callable[[], Awaitable[str]], *, clock: Clock, refresh_s: float) -> None:
        async def timed() -> AccessToken:
            started = clock()
            return AccessToken(await fetch(), started + refresh_s)

        super().__init__(timed, clock=clock, refresh_margin_s=0.0)

    @property
    def value(self) -> str:
        return self.current
