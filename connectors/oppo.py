"""OPPO PUSH server API adapter: auth token, then save the message and broadcast it to regids.

Auth: `POST {base}/server/v1/auth` form {app_key, timestamp (ms), sign = sha256(app_key + timestamp +
master_secret)} → {code: 0, data: {auth_token, create_time}}. The token is valid 24 h; it is cached and
fetched again after token_refresh_s (default 20 h) or after an error 11.

Send, per chunk of regids (we chose broadcast over unicast_batch: one stored message, many targets):
  1. `POST /server/v1/message/notification/save_message_content` form {auth_token, title (≤50 chars),
     content (≤200 chars), app_message_id=msg_id, click_action_type=0, action_parameters=JSON
     {**data, msg_id}, off_line, off_line_ttl (s, ≤10 days), channel_id?, call_back_url?,
     call_back_parameter=msg_id} → data.message_id
  2. `POST /server/v1/message/notification/broadcast` form {auth_token, message_id, target_type=2,
     target_value} → data {message_id, task_id, "<code>": [regids that failed with that code]}
  target_value joins regids with ";" (OPPO's separator in its broadcast docs; the brief said ","),
  at most max_batch per request (UNCONFIRMED → configurable, default 1000).

Codes (HTTP 200 JSON {code, message, data}):
  0 accepted; per-target 10000 (invalid registration_id) → INVALID_TOKEN, any other per-target code → REJECTED
  -2 flow control, 13 / 55 call frequency → THROTTLED (no Retry-After is given)
  33 daily message limit → THROTTLED, retry_after_s = until 00:00 UTC+8 (reset time UNCONFIRMED)
  11 invalid auth_token → the cached token is dropped, UNAVAILABLE (the next send authenticates again)
  -1 service unavailable, HTTP 5xx, timeouts, transport errors → UNAVAILABLE; HTTP 429 → THROTTLED
  14 bad app_key, 16 bad signature, other codes → REJECTED
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import httpx

from pushpipe.connectors.base import Failure, Notification, Outcome, Secret, TokenResult, Vendor, VendorError, per_token, reveal
from pushpipe.connectors.batch_adapter import (
    BatchAdapter,
    BatchHttpConfig,
    app_credentials_entry,
    auth_token,
    check_max,
    coded_reply,
    custom_data,
    require_title,
    seconds_until_china_hour,
)
from pushpipe.connectors.credentials import AuthTokenCache
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.signing import compact_json, form_body, sha256_hex
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://api.push.oppomobile.com"
AUTH_PATH = "/server/v1/auth"
SAVE_PATH = "/server/v1/message/notification/save_message_content"
BROADCAST_PATH = "/server/v1/message/notification/broadcast"
TITLE_MAX_CHARS = 50
CONTENT_MAX_CHARS = 200
OFFLINE_TTL_MAX_S = 10 * 86_400
TOKEN_LIFETIME_S = 24 * 3600
INVALID_AUTH = 11
DAILY_LIMIT = 33
THROTTLE_CODES = frozenset({-2, 13, 55})
UNAVAILABLE_CODES = frozenset({-1})
INVALID_REGID = "10000"
FORM = {"content-type": "application/x-www-form-urlencoded;charset=UTF-8"}


@dataclass(frozen=True, kw_only=True)
class OppoConfig(BatchHttpConfig):
    vendor: ClassVar[Vendor] = Vendor.OPPO
    secret_fields: ClassVar[tuple[str, ...]] = ("master_secret",)
    required_fields: ClassVar[tuple[str, ...]] = ("app_key",)

    app_key: str
    master_secret: Secret | str
    base_url: str = PRODUCTION_URL
    channel_id: str = ""  # Android notification channel registered with OPPO
    callback_url: str = ""  # receipt endpoint (call_back_url); "" = no receipts
    token_refresh_s: float = 20 * 3600

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 60 <= self.token_refresh_s < TOKEN_LIFETIME_S:
            raise ValueError("token_refresh_s must be within [60 s, 24 h): OPPO tokens live 24 h")


# ---- pure builders ---------------------------------------------------------------------------------

def auth_sign(app_key: str, timestamp_ms: str, master_secret: str) -> str:
    return sha256_hex(app_key + timestamp_ms + master_secret)


def auth_fields(c: OppoConfig, now: float) -> dict[str, str]:
    timestamp = str(int(now * 1000))
    return {"app_key": c.app_key, "timestamp": timestamp,
            "sign": auth_sign(c.app_key, timestamp, reveal(c.master_secret))}


def build_content(n: Notification, c: OppoConfig) -> dict[str, str]:
    """The save_message_content fields (without auth_token); raises InvalidNotification."""
    require_title(n)
    check_max("title length", len(n.title), TITLE_MAX_CHARS, "TitleTooLong")
    check_max("content length", len(n.body), CONTENT_MAX_CHARS, "BodyTooLong")
    fields = {"title": n.title, "content": n.body, "app_message_id": n.msg_id, "click_action_type": "0",
              "action_parameters": compact_json(custom_data(n)), "off_line": str(n.ttl_s > 0).lower(),
              "off_line_ttl": str(min(max(n.ttl_s, 1), OFFLINE_TTL_MAX_S))}
    if c.channel_id:
        fields["channel_id"] = c.channel_id
    if callback := n.callback_url or c.callback_url:
        fields |= {"call_back_url": callback, "call_back_parameter": n.msg_id}
    return fields


def broadcast_fields(message_id: str, tokens: list[str]) -> dict[str, str]:
    return {"message_id": message_id, "target_type": "2", "target_value": ";".join(tokens)}


# ---- responses -------------------------------------------------------------------------------------

class Reply(NamedTuple):
    code: int
    message: str
    data: dict[str, Any]


def parse_reply(status: int, headers: Mapping[str, str], body: bytes, now: float) -> Reply:
    """The {code, message, data} reply of any OPPO call; VendorError for HTTP-level failures."""
    doc = coded_reply(status, headers, body, now, "code")
    data = doc.get("data")
    return Reply(doc["code"], str(doc.get("message", "")), data if isinstance(data, dict) else {})


def call_error(reply: Reply, now: float) -> VendorError:
    """The whole-chunk error for a non-zero code (11 is handled by the caller first)."""
    code = str(reply.code)
    if reply.code == DAILY_LIMIT:
        return VendorError(Outcome.THROTTLED, code, reply.message, seconds_until_china_hour(now))
    if reply.code in THROTTLE_CODES:
        return VendorError(Outcome.THROTTLED, code, reply.message)
    if reply.code in UNAVAILABLE_CODES or reply.code == INVALID_AUTH:
        return VendorError(Outcome.UNAVAILABLE, code, reply.message)
    return VendorError(Outcome.REJECTED, code, reply.message)


def target_failures(data: Mapping[str, Any]) -> dict[str, Failure]:
    """Per-target lists in broadcast data: {"10000": [regid, …], …}."""
    failures: dict[str, Failure] = {}
    for key, targets in data.items():
        if key.lstrip("-").isdigit() and isinstance(targets, list):
            outcome = Outcome.INVALID_TOKEN if key == INVALID_REGID else Outcome.REJECTED
            failures |= {str(t): (outcome, key, "InvalidRegistrationId" if key == INVALID_REGID else "TargetFailed")
                         for t in targets}
    return failures


def classify_broadcast(tokens: list[str], reply: Reply, now: float) -> list[TokenResult]:
    if reply.code != 0:
        return call_error(reply, now).results(tokens)
    msg_id = str(reply.data.get("task_id") or reply.data.get("message_id", ""))
    return per_token(tokens, target_failures(reply.data), "0", msg_id)


# ---- adapter ---------------------------------------------------------------------------------------

class OppoAdapter(BatchAdapter[OppoConfig, dict[str, str]]):
    """VendorAdapter for OPPO PUSH: cached auth token, save_message_content + broadcast per chunk."""

    vendor = Vendor.OPPO
    separator = ";"

    auth: AuthTokenCache  # created in open()

    def on_open(self, client: httpx.AsyncClient) -> None:
        self.auth = AuthTokenCache(lambda: self._fetch_token(client), clock=self._clock, lifetime_s=TOKEN_LIFETIME_S,
                                   refresh_s=self.config.token_refresh_s, events=self.credential_events)

    def prepare(self, notification: Notification) -> dict[str, str]:
        return build_content(notification, self.config)

    async def send_batch(self, client: httpx.AsyncClient, prepared: dict[str, str],
                         tokens: list[str]) -> list[TokenResult]:
        token = await self.auth.get()
        saved = await self._call(client, SAVE_PATH, {"auth_token": token, **prepared}, token)
        if saved.code != 0:
            raise call_error(saved, self._clock())
        fields = broadcast_fields(str(saved.data.get("message_id", "")), tokens)
        return classify_broadcast(tokens, await self._call(client, BROADCAST_PATH, {"auth_token": token, **fields},
                                                           token), self._clock())

    async def _call(self, client: httpx.AsyncClient, path: str, fields: dict[str, str], token: str) -> Reply:
        status, headers, body = await self.post(client, path, content=form_body(fields),
                                                headers={**FORM, "auth_token": token})
        reply = parse_reply(status, headers, body, self._clock())
        if reply.code == INVALID_AUTH:
            self.auth.invalidate(token)
        return reply

    async def _fetch_token(self, client: httpx.AsyncClient) -> str:
        status, headers, body = await self.post(client, AUTH_PATH, headers=FORM,
                                                content=form_body(auth_fields(self.config, self._clock())))
        reply = parse_reply(status, headers, body, self._clock())
        if reply.code != 0:
            err = call_error(reply, self._clock())
            raise VendorError(err.outcome, err.code, f"auth: {err.reason}", err.retry_after_s)
        return auth_token(reply.data.get("auth_token"), status)


SPEC = VendorSpec(
    vendor=Vendor.OPPO, config=OppoConfig, adapter=OppoAdapter, simulator_entry=app_credentials_entry,
    payload=PayloadLimit(title_max=TITLE_MAX_CHARS, body_max=CONTENT_MAX_CHARS, needs_title=True),
    daily_quota=True,
    sample_token=lambda hexed: f"{hexed}CN_" + "d" * 32,
    receipts="message",
)
