"""The shared OAuth2 token cache and token-endpoint reply handling, no network."""
from __future__ import annotations

import asyncio
import json

import pytest

from pushpipe.connectors.base import Outcome
from pushpipe.connectors.credentials import AccessToken, AccessTokenCache
from pushpipe.connectors.oauth import TokenError, client_credentials_form, token_from_response

NOW = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingFetch:
    """A token source that issues t1, t2, ... valid for `ttl_s`; optionally slow or failing."""

    def __init__(self, clock: FakeClock, ttl_s: float = 3600, delay_s: float = 0.0) -> None:
        self.clock, self.ttl_s, self.delay_s = clock, ttl_s, delay_s
        self.calls = 0
        self.error: TokenError | None = None

    async def __call__(self) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.error:
            raise self.error
        return AccessToken(f"t{self.calls}", self.clock() + self.ttl_s)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_token_is_cached_until_the_refresh_margin() -> None:
    clock = FakeClock(NOW)
    fetch = CountingFetch(clock)
    cache = AccessTokenCache(fetch, clock=clock, refresh_margin_s=300)
    assert run(cache.get()) == "t1"
    clock.now = NOW + 3299
    assert run(cache.get()) == "t1"
    clock.now = NOW + 3300
    assert run(cache.get()) == "t2" and fetch.calls == 2


def test_concurrent_callers_share_one_fetch() -> None:
    clock = FakeClock(NOW)
    fetch = CountingFetch(clock, delay_s=0.05)
    cache = AccessTokenCache(fetch, clock=clock, refresh_margin_s=300)

    async def many() -> list[str]:
        return list(await asyncio.gather(*(cache.get() for _ in range(50))))

    assert run(many()) == ["t1"] * 50 and fetch.calls == 1


def test_invalidate_drops_only_the_current_token() -> None:
    clock = FakeClock(NOW)
    cache = AccessTokenCache(CountingFetch(clock), clock=clock, refresh_margin_s=300)
    stale = run(cache.get())
    assert cache.invalidate(stale)
    fresh = run(cache.get())
    assert fresh == "t2"
    assert not cache.invalidate(stale), "a late 401 for the old token must not drop the new one"
    assert cache.current == fresh


def test_a_failed_fetch_is_not_cached() -> None:
    clock = FakeClock(NOW)
    fetch = CountingFetch(clock)
    fetch.error = TokenError(Outcome.UNAVAILABLE, "503", "down")
    cache = AccessTokenCache(fetch, clock=clock, refresh_margin_s=300)
    with pytest.raises(TokenError):
        run(cache.get())
    fetch.error = None
    assert run(cache.get()) == "t2"


def _reply(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def test_token_reply_gives_value_and_expiry() -> None:
    token = token_from_response(200, {}, _reply({"access_token": "abc", "expires_in": 3600, "token_type": "Bearer"}), NOW)
    assert token == AccessToken("abc", NOW + 3600)


@pytest.mark.parametrize(("status", "body", "headers", "outcome", "retry_after"), [
    (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {}, Outcome.REJECTED, None),
    (401, {"error": "invalid_client"}, {}, Outcome.REJECTED, None),
    (429, {"error": "rate_limited"}, {"retry-after": "30"}, Outcome.THROTTLED, 30.0),
    (503, {}, {"retry-after": "5"}, Outcome.UNAVAILABLE, 5.0),
    (200, {"token_type": "Bearer"}, {}, Outcome.UNAVAILABLE, None),  # no access_token: a vendor fault
])
def test_token_endpoint_failures_become_outcomes(status: int, body: dict, headers: dict, outcome: Outcome,
                                                 retry_after: float | None) -> None:
    with pytest.raises(TokenError) as err:
        token_from_response(status, headers, _reply(body), NOW)
    assert (err.value.outcome, err.value.code, err.value.retry_after_s) == (outcome, str(status), retry_after)
    result = err.value.result("tok")
    assert (result.token, result.outcome) == ("tok", outcome)


def test_error_reason_names_the_oauth_error() -> None:
    with pytest.raises(TokenError, match="invalid_grant: Invalid JWT Signature"):
        token_from_response(400, {}, _reply({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}), NOW)


def test_client_credentials_form() -> None:
    assert client_credentials_form("id", "secret") == {"grant_type": "client_credentials", "client_id": "id",
                                                        "client_secret": "secret"}
