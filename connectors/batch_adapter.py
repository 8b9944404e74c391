"""Plumbing for vendors that push one message to many tokens per HTTP call: Xiaomi, OPPO, vivo, Meizu, Umeng.

A vendor module supplies a config (a `BatchHttpConfig`), a pure `prepare()` that validates and builds
the vendor message (raising `InvalidNotification`), and `send_batch()` for one chunk of tokens.
`BatchAdapter` does the rest identically for all of them:

- one httpx.AsyncClient per adapter, created in open() and closed in aclose();
- an invalid notification → REJECTED for every token, without a network call;
- tokens split into chunks of max_batch, at most max_concurrency chunks in flight;
- timeouts and transport errors → UNAVAILABLE; a `VendorError` raised by any step (auth, a save step,
  an HTTP 429/5xx) → its outcome for the whole chunk. It never raises for vendor errors and never
  retries: the pipeline owns retries (STYLE.md "Follow" 6).

Daily caps are taken to reset at 00:00 China Standard Time (UTC+8). No vendor states the reset time
(UNCONFIRMED); their docs say "today" (当天), so retry_after_s for a daily cap is the time until then.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import httpx

from pushpipe.connectors.base import (
    AdapterSession,
    InvalidNotification,
    Notification,
    Outcome,
    TokenResult,
    Vendor,
    VendorError,
    mask_secrets,
    reveal,
)
from pushpipe.connectors.http import json_object, parse_retry_after, ssl_verify, transport_failure

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")


# ---- settings --------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class BatchHttpConfig:
    """Fields every batch vendor shares; subclasses name their secrets and required fields."""

    secret_fields: ClassVar[tuple[str, ...]] = ()  # stored as Secret, never shown
    required_fields: ClassVar[tuple[str, ...]] = ()  # must be non-empty

    base_url: str
    verify: str | bool = True  # CA bundle path, True (system CAs) or False
    timeout_s: float = 10.0
    max_batch: int = 1000  # tokens per vendor request
    max_concurrency: int = 4  # requests in flight per adapter

    def __post_init__(self) -> None:
        mask_secrets(self, *self.secret_fields)
        for name in (*self.required_fields, *self.secret_fields):
            if not reveal(getattr(self, name)):
                raise ValueError(f"{name} is required")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if self.timeout_s <= 0 or self.max_batch < 1 or self.max_concurrency < 1:
            raise ValueError("timeout_s, max_batch and max_concurrency must be positive")

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    @classmethod
    def from_credentials(cls, path: Path, **overrides: Any) -> Self:
        """Load a credentials JSON whose keys are this config's fields (as the simulators write it)."""
        return cls(**{**json.loads(Path(path).read_text()), **overrides})


def app_credentials_entry(creds: Mapping[str, Any], sims: Mapping[str, Any]) -> dict[str, Any]:
    """SPEC.simulator_entry of the batch vendors: the credentials file holds config fields; fixed API paths."""
    return {**creds, "base_url": sims["api_url"], "verify": sims["ca_cert"]}


# ---- results ---------------------------------------------------------------------------------------

def http_failure(status: int, headers: Mapping[str, str], now: float) -> VendorError | None:
    """HTTP-level answers every vendor shares: 429 → throttled (Retry-After), 5xx → unavailable."""
    if status == 429:
        return VendorError(Outcome.THROTTLED, "429", "TooManyRequests",
                           parse_retry_after(headers.get("retry-after"), now))
    if status >= 500:
        return VendorError(Outcome.UNAVAILABLE, str(status), "ServerError")
    return None


def bad_response(status: int) -> VendorError:
    return VendorError(Outcome.UNAVAILABLE, str(status), "BadResponse")


def coded_reply(status: int, headers: Mapping[str, str], body: bytes, now: float, code_key: str) -> dict[str, Any]:
    """The JSON object of an answer whose `code_key` holds an int code (Xiaomi, OPPO, vivo); raises the
    http_failure() for HTTP-level failures, BadResponse for any other body."""
    if err := http_failure(status, headers, now):
        raise err
    doc = json_object(body)
    if not isinstance(doc.get(code_key), int):
        raise bad_response(status)
    return doc


def auth_token(value: object, status: int) -> str:
    """The token an auth call answered (OPPO, vivo); BadResponse when it is missing or empty."""
    if not isinstance(value, str) or not value:
        raise bad_response(status)
    return value


def seconds_until_china_hour(now: float, hour: int = 0) -> float:
    """Seconds from `now` until the next hour:00 in China Standard Time (daily caps reset at 0)."""
    local = dt.datetime.fromtimestamp(now, CHINA_TZ)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += dt.timedelta(days=1)
    return target.timestamp() - now


# ---- local checks ----------------------------------------------------------------------------------

def require_title(n: Notification) -> None:
    if not n.title:
        raise InvalidNotification("MissingTitle", "this vendor shows only notifications with a title")


def check_max(what: str, size: int, maximum: int, reason: str) -> None:
    if size > maximum:
        raise InvalidNotification(reason, f"{what} is {size}, over {maximum}")


def custom_data(n: Notification) -> dict[str, str]:
    """The app's key/values plus msg_id (the same flat shape the APNs payload carries)."""
    return {**n.data, "msg_id": n.msg_id}


def merge_malformed(tokens: list[str], sendable: list[str], sent: list[TokenResult]) -> list[TokenResult]:
    """Results in token order: `sent` for the sendable tokens, INVALID_TOKEN for the others."""
    assert len(sent) == len(sendable), "one result per sent token"
    pending = iter(sent)
    sendable_set = set(sendable)
    return [next(pending) if t in sendable_set else TokenResult(t, Outcome.INVALID_TOKEN, reason="MalformedToken")
            for t in tokens]


def chunks(tokens: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(tokens), size):
        yield tokens[start:start + size]


# ---- the adapter -----------------------------------------------------------------------------------

C = TypeVar("C", bound=BatchHttpConfig)
P = TypeVar("P")  # a vendor's prepared message


class BatchAdapter(AdapterSession[C, httpx.AsyncClient], Generic[C, P]):
    """VendorAdapter skeleton: subclasses implement prepare() and send_batch(), optionally on_open()."""

    vendor: Vendor
    separator: ClassVar[str] = ""  # joins tokens in the vendor request ("" = a JSON list)

    def start(self) -> httpx.AsyncClient:
        c = self.config
        client = httpx.AsyncClient(verify=ssl_verify(c.verify), timeout=httpx.Timeout(c.timeout_s),
                                   limits=httpx.Limits(max_connections=c.max_concurrency))
        self.on_open(client)
        return client

    def on_open(self, client: httpx.AsyncClient) -> None:
        """Create per-session state (auth token caches)."""

    async def stop(self, session: httpx.AsyncClient) -> None:
        await session.aclose()

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        client = self.session()
        try:
            prepared = self.prepare(notification)
        except InvalidNotification as exc:
            return exc.results(tokens)
        gate = asyncio.Semaphore(self.config.max_concurrency)
        parts = await asyncio.gather(*(self._send_chunk(client, gate, prepared, chunk)
                                       for chunk in chunks(tokens, self.max_batch)))
        return [r for part in parts for r in part]

    async def _send_chunk(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, prepared: P,
                          tokens: list[str]) -> list[TokenResult]:
        sendable = [t for t in tokens if self.well_formed(t)]
        async with gate:
            sent = await self._send_guarded(client, prepared, sendable) if sendable else []
        return merge_malformed(tokens, sendable, sent)

    async def _send_guarded(self, client: httpx.AsyncClient, prepared: P, tokens: list[str]) -> list[TokenResult]:
        try:
            return await self.send_batch(client, prepared, tokens)
        except VendorError as exc:
            return exc.results(tokens)
        except (httpx.HTTPError, OSError) as exc:  # connect, TLS, reset, timeouts
            return [transport_failure(t, exc) for t in tokens]

    def well_formed(self, token: str) -> bool:
        """False for tokens that cannot be sent: empty, or containing the vendor's list separator."""
        return bool(token) and not (self.separator and self.separator in token)

    def prepare(self, notification: Notification) -> P:
        """Validate and build the vendor message once per send(); raise InvalidNotification."""
        raise NotImplementedError

    async def send_batch(self, client: httpx.AsyncClient, prepared: P, tokens: list[str]) -> list[TokenResult]:
        """One vendor request for at most max_batch tokens; one result per token, in order."""
        raise NotImplementedError

    async def post(self, client: httpx.AsyncClient, path: str, **kwargs: Any) -> tuple[int, Mapping[str, str], bytes]:
        resp = await client.post(self.config.url(path), **kwargs)
        return resp.status_code, resp.headers, resp.content
