"""vivo push server API adapter: auth token, single send or save-payload + push-to-list (JSON).

Auth: `POST {base}/message/auth` {appId, appKey, timestamp (ms), sign = md5(appId + appKey + timestamp
+ appSecret)} → {result: 0, authToken}. The token lives 1 day; it goes in the `authToken` header and
is cached for token_refresh_s (default 1 h, as vivo advises refreshing every 1-2 h), and dropped after
an auth error.

Send, per chunk of regIds:
  1 regId   `POST /message/send` {appId, regId, notifyType, title, content, timeToLive, skipType,
            networkType, classification, clientCustomMap, requestId, extra {callback, callback.param}}
            (vivo sends receipts only for single sends) → {result, desc, taskId}
  2+ regIds `POST /message/saveListPayload` {the same message, no regId} → taskId, then
            `POST /message/pushToList` {appId, regIds[], taskId, requestId} → {result, desc, taskId,
            invalidUsers: [{status, userId}]}. List size 2..max_batch (vivo's maximum UNCONFIRMED,
            default 1000).
Limits checked locally: title ≤40 and content ≤100 "width" (a CJK character counts 2) → REJECTED
"TitleTooLong"/"BodyTooLong"; clientCustomMap ({**data, msg_id}) ≤1024 characters of JSON →
"PayloadTooLarge" (UNCONFIRMED how vivo counts it); timeToLive clamped to [900 s, 7 days].
classification: 1 (system) for the policy's service class, 0 (operation) for marketing (fan-out classes each
category: Notification.message_class), otherwise the configured default (0: system messages need vivo's approval).

Codes (HTTP 200 JSON {result, desc, …}; 0 and 10070/10252/10254 are documented, the rest UNCONFIRMED):
  0 accepted; invalidUsers (status 1 unknown, 2 unsubscribed, 3 long offline, …) → INVALID_TOKEN
  10302 regId does not exist (single send) → INVALID_TOKEN
  10070 daily total exceeded, 10252 list payloads exceeded, 10254 "all" sends exceeded → THROTTLED,
        retry_after_s = until 00:00 UTC+8 (vivo: do not call again that day)
  10071 operation message outside 07:00-23:00 → THROTTLED until 07:00 UTC+8
  10000 authentication failed on a send (expired/invalid authToken) → token dropped, UNAVAILABLE;
        any error from /message/auth itself (wrong appSecret, …) → REJECTED
  HTTP 429 (rate limit; vivo's own signal is UNCONFIRMED) → THROTTLED with Retry-After;
  HTTP 5xx, timeouts, transport errors → UNAVAILABLE; other codes → REJECTED.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

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
from pushpipe.connectors.limits import PayloadLimit, width
from pushpipe.connectors.signing import compact_json, md5_hex
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://api-push.vivo.com.cn"
AUTH_PATH = "/message/auth"
SEND_PATH = "/message/send"
SAVE_LIST_PATH = "/message/saveListPayload"
PUSH_LIST_PATH = "/message/pushToList"
TITLE_MAX_WIDTH = 40
CONTENT_MAX_WIDTH = 100
CUSTOM_MAP_MAX_CHARS = 1024
TTL_MIN_S, TTL_MAX_S = 900, 7 * 86_400
TOKEN_LIFETIME_S = 24 * 3600
AUTH_FAILED = 10000
INVALID_REGID = 10302
DAILY_CODES = frozenset({10070, 10252, 10254})
OFF_HOURS = 10071
OPERATION_START_HOUR = 7
CLASSIFICATION = {"service": 1, "marketing": 0}  # vivo's 1 system (service), 0 operation (marketing)
_REQUEST_NS = uuid.UUID("2b0f4d8e-6a1c-4f39-9d57-0c6b9a3e7f21")

Classification = Literal[0, 1]


@dataclass(frozen=True, kw_only=True)
class VivoConfig(BatchHttpConfig):
    vendor: ClassVar[Vendor] = Vendor.VIVO
    secret_fields: ClassVar[tuple[str, ...]] = ("app_secret",)
    required_fields: ClassVar[tuple[str, ...]] = ("app_id", "app_key")

    app_id: str
    app_key: str
    app_secret: Secret | str
    base_url: str = PRODUCTION_URL
    classification: Classification = 0  # when the notification's category does not say
    callback_url: str = ""  # receipt endpoint (single sends only); "" = no receipts
    token_refresh_s: float = 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.classification not in (0, 1):
            raise ValueError("classification must be 0 (operation) or 1 (system)")
        if not 60 <= self.token_refresh_s < TOKEN_LIFETIME_S:
            raise ValueError("token_refresh_s must be within [60 s, 24 h): vivo tokens live 1 day")
        if len(self.callback_url) > 128:
            raise ValueError("callback_url must be at most 128 characters")


# ---- pure builders ---------------------------------------------------------------------------------

def classification(n: Notification, c: VivoConfig) -> int:
    """vivo's class of the message: the policy's (Notification.message_class), else the configured default."""
    return CLASSIFICATION.get(n.message_class, c.classification)


def auth_sign(app_id: str, app_key: str, timestamp_ms: str, app_secret: str) -> str:
    return md5_hex(app_id + app_key + timestamp_ms + app_secret)


def auth_body(c: VivoConfig, now: float) -> dict[str, str]:
    timestamp = str(int(now * 1000))
    return {"appId": c.app_id, "appKey": c.app_key, "timestamp": timestamp,
            "sign": auth_sign(c.app_id, c.app_key, timestamp, reveal(c.app_secret))}


def request_id(*parts: str) -> str:
    """Stable per message (and targets), so a retried request carries the same requestId."""
    return uuid.uuid5(_REQUEST_NS, "/".join(parts)).hex


def build_message(n: Notification, c: VivoConfig) -> dict[str, Any]:
    """Fields shared by /message/send and /message/saveListPayload; raises InvalidNotification."""
    require_title(n)
    check_max("title width", width(n.title), TITLE_MAX_WIDTH, "TitleTooLong")
    check_max("content width", width(n.body), CONTENT_MAX_WIDTH, "BodyTooLong")
    data = custom_data(n)
    check_max("clientCustomMap characters", len(compact_json(data)), CUSTOM_MAP_MAX_CHARS, "PayloadTooLarge")
    message = {"appId": c.app_id, "notifyType": 4, "title": n.title, "content": n.body,
               "timeToLive": min(max(n.ttl_s, TTL_MIN_S), TTL_MAX_S), "skipType": 1, "networkType": -1,
               "classification": classification(n, c), "clientCustomMap": data,
               "requestId": request_id(n.msg_id)}
    callback = n.callback_url or c.callback_url
    if callback:  # receipts come for single sends only; a list's saved payload goes without it
        message["extra"] = {"callback": callback, "callback.param": n.msg_id}
    return message


def single_body(message: Mapping[str, Any], token: str) -> dict[str, Any]:
    return {**message, "regId": token, "requestId": request_id(message["clientCustomMap"]["msg_id"], token)}


def push_list_body(message: Mapping[str, Any], task_id: str, tokens: list[str]) -> dict[str, Any]:
    return {"appId": message["appId"], "regIds": tokens, "taskId": task_id,
            "requestId": request_id(message["clientCustomMap"]["msg_id"], *tokens)}


# ---- responses -------------------------------------------------------------------------------------

class Reply(NamedTuple):
    result: int
    desc: str
    doc: dict[str, Any]


def parse_reply(status: int, headers: Mapping[str, str], body: bytes, now: float) -> Reply:
    doc = coded_reply(status, headers, body, now, "result")
    return Reply(doc["result"], str(doc.get("desc", "")), doc)


def call_error(reply: Reply, now: float) -> VendorError:
    """The whole-chunk error for a non-zero result on a send step."""
    code = str(reply.result)
    if reply.result in DAILY_CODES:
        return VendorError(Outcome.THROTTLED, code, reply.desc, seconds_until_china_hour(now))
    if reply.result == OFF_HOURS:
        return VendorError(Outcome.THROTTLED, code, reply.desc, seconds_until_china_hour(now, OPERATION_START_HOUR))
    if reply.result == AUTH_FAILED:
        return VendorError(Outcome.UNAVAILABLE, code, reply.desc)
    if reply.result == INVALID_REGID:
        return VendorError(Outcome.INVALID_TOKEN, code, reply.desc)
    return VendorError(Outcome.REJECTED, code, reply.desc)


def invalid_users(doc: Mapping[str, Any]) -> dict[str, Failure]:
    users = doc.get("invalidUsers")
    if not isinstance(users, list):
        return {}
    return {str(u.get("userId")): (Outcome.INVALID_TOKEN, f"invalidUsers.{u.get('status')}", "InvalidUser")
            for u in users if isinstance(u, dict)}


def classify_push(tokens: list[str], reply: Reply, now: float) -> list[TokenResult]:
    """The result of /message/send or /message/pushToList."""
    if reply.result != 0:
        return call_error(reply, now).results(tokens)
    return per_token(tokens, invalid_users(reply.doc), "0", str(reply.doc.get("taskId", "")))


# ---- adapter ---------------------------------------------------------------------------------------

class VivoAdapter(BatchAdapter[VivoConfig, dict[str, Any]]):
    """VendorAdapter for vivo push: cached authToken; /message/send for one regId, list push otherwise."""

    vendor = Vendor.VIVO
    auth: AuthTokenCache  # created in open()

    def on_open(self, client: httpx.AsyncClient) -> None:
        self.auth = AuthTokenCache(lambda: self._fetch_token(client), clock=self._clock, lifetime_s=TOKEN_LIFETIME_S,
                                   refresh_s=self.config.token_refresh_s, events=self.credential_events)

    def prepare(self, notification: Notification) -> dict[str, Any]:
        return build_message(notification, self.config)

    async def send_batch(self, client: httpx.AsyncClient, prepared: dict[str, Any],
                         tokens: list[str]) -> list[TokenResult]:
        token = await self.auth.get()
        if len(tokens) == 1:
            reply = await self._call(client, SEND_PATH, single_body(prepared, tokens[0]), token)
        else:
            saved = await self._call(client, SAVE_LIST_PATH, {k: v for k, v in prepared.items() if k != "extra"}, token)
            if saved.result != 0:
                raise call_error(saved, self._clock())
            body = push_list_body(prepared, str(saved.doc.get("taskId", "")), tokens)
            reply = await self._call(client, PUSH_LIST_PATH, body, token)
        return classify_push(tokens, reply, self._clock())

    async def _call(self, client: httpx.AsyncClient, path: str, body: Mapping[str, Any], token: str) -> Reply:
        status, headers, content = await self.post(client, path, json=body, headers={"authToken": token})
        reply = parse_reply(status, headers, content, self._clock())
        if reply.result == AUTH_FAILED:
            self.auth.invalidate(token)
        return reply

    async def _fetch_token(self, client: httpx.AsyncClient) -> str:
        status, headers, content = await self.post(client, AUTH_PATH, json=auth_body(self.config, self._clock()))
        reply = parse_reply(status, headers, content, self._clock())
        if reply.result != 0:
            raise VendorError(Outcome.REJECTED, str(reply.result), f"auth: {reply.desc}")
        return auth_token(reply.doc.get("authToken"), status)


SPEC = VendorSpec(
    vendor=Vendor.VIVO, config=VivoConfig, adapter=VivoAdapter, simulator_entry=app_credentials_entry,
    payload=PayloadLimit(title_max=TITLE_MAX_WIDTH, body_max=CONTENT_MAX_WIDTH, measure="width",
                         data_max_chars=CUSTOM_MAP_MAX_CHARS, needs_title=True),  # UNCONFIRMED
    daily_quota=True,
    sample_token=lambda hexed: hexed + "1" * 12,
    receipts="message",
)
