"""The one credential cache of the adapters: OAuth access tokens (FCM, HMS, Honor), vendor auth tokens
(OPPO, vivo) and the APNs provider JWT are all "a value, kept until shortly before it expires".

`CredentialCache` holds the value, when it was obtained and when it expires, and:
- refreshes `refresh_margin_s` before the expiry, and when the clock went backwards (its age is unknown);
- `invalidate(stale)` drops the value only if it is still the current one (many in-flight 401s cause
  one refresh, and a late 401 for an old value does not drop the new one);
- concurrent async callers share one fetch; a failed fetch is not cached.
`AccessTokenCache` and `AuthTokenCache` bind an async fetch to it; the APNs provider token mints synchronously.

Each credential kind has a name (`kind`: "access token", "auth token", "provider jwt"), and a cache tells its
`CredentialEvents` when it obtained a credential (and when that expires) and when obtaining one failed. The
dispatch job turns these into metrics (jobs/metrics.py); the connectors know nothing of Prometheus.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Protocol

Clock = Callable[[], float]


class CredentialEvents(Protocol):
    """Where a cache reports the life of its credential (times on the cache's clock: Unix time in dispatch)."""

    def obtained(self, credential: str, expires_at: float) -> None: ...

    def failed(self, credential: str) -> None: ...


class Unwatched:
    """CredentialEvents that go nowhere (an adapter nobody watches)."""

    def obtained(self, credential: str, expires_at: float) -> None:
        pass

    def failed(self, credential: str) -> None:
        pass


UNWATCHED = Unwatched()


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # clock time


Fetch = Callable[[], Awaitable[AccessToken]]
Mint = Callable[[float], AccessToken]  # now -> a credential made locally (no network)


class CredentialCache:
    """One credential: obtained on first use and again `refresh_margin_s` before it expires."""

    kind: ClassVar[str] = "credential"

    def __init__(self, *, clock: Clock, refresh_margin_s: float = 0.0, events: CredentialEvents = UNWATCHED) -> None:
        self._clock, self._margin, self._events = clock, refresh_margin_s, events
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
        self._events.obtained(self.kind, token.expires_at)
        return token.value

    @contextmanager
    def _reporting_failure(self) -> Iterator[None]:
        try:
            yield
        except Exception:
            self._events.failed(self.kind)
            raise

    async def obtain(self, fetch: Fetch) -> str:
        """The cached value, or a new one from `fetch` (concurrent callers share one fetch)."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    started, self.fetches = self._clock(), self.fetches + 1
                    with self._reporting_failure():
                        token = await fetch()
                    return self._keep(token, started)
        return self.current

    def obtain_now(self, mint: Mint) -> str:
        """The cached value, or a new one from `mint` (synchronous: nothing to wait for)."""
        if not self._fresh():
            now, self.fetches = self._clock(), self.fetches + 1
            with self._reporting_failure():
                token = mint(now)
            return self._keep(token, now)
        return self.current

    def invalidate(self, stale: str) -> bool:
        """Drop `stale` if it is still current; True if it was."""
        if self._token is None or self._token.value != stale:
            return False
        self._token = None
        return True


class AccessTokenCache(CredentialCache):
    """An access token whose endpoint says when it expires (OAuth2 `expires_in`)."""

    kind: ClassVar[str] = "access token"

    def __init__(self, fetch: Fetch, *, clock: Clock, refresh_margin_s: float, events: CredentialEvents = UNWATCHED) -> None:
        super().__init__(clock=clock, refresh_margin_s=refresh_margin_s, events=events)
        self._fetch = fetch

    async def get(self) -> str:
        return await self.obtain(self._fetch)


class AuthTokenCache(AccessTokenCache):
    """A vendor auth token without a stated expiry (OPPO, vivo): valid `lifetime_s` (as the vendor documents it) from
    when the fetch started (the vendor made it later, so it expires no sooner), and kept `refresh_s` from then."""

    kind: ClassVar[str] = "auth token"

    def __init__(self, fetch: Callable[[], Awaitable[str]], *, clock: Clock, lifetime_s: float, refresh_s: float,
                 events: CredentialEvents = UNWATCHED) -> None:
        async def timed() -> AccessToken:
            started = clock()
            return AccessToken(await fetch(), started + lifetime_s)

        super().__init__(timed, clock=clock, refresh_margin_s=lifetime_s - refresh_s, events=events)

    @property
    def value(self) -> str:
        return self.current
