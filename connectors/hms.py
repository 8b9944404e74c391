"""Huawei Push Kit (HMS Core) v1 adapter: up to 1000 tokens per request, client-credentials OAuth.

Auth: `POST {auth_url}{token_path}` (default https://oauth-login.cloud.huawei.com/oauth2/v3/token)
with the form grant_type=client_credentials, client_id (= the AppID unless set), client_secret.
The token (expires_in 3600) is cached, refreshed `refresh_margin_s` early and dropped when the
API answers 80200001 / 80200003 / HTTP 401 (those tokens come back `unavailable`).

Send: `POST {base_url}/v1/{app_id}/messages:send` with
    {"validate_only": false, "message": {"android": {"urgency": "HIGH"|"NORMAL", "ttl": "Ns",
     "bi_tag": "<app>|<msg_id>", "category"?, "notification"?: {title, body, click_action: {type: 3}}},
     "data": "<JSON string of data + msg_id>", "token": [1..1000 tokens]}}
`bi_tag` names the app and the message (schemas/keys.py message_key), so delivery receipts
({"statuses": [{biTag, token, status, ...}]}), posted to one receipt URL per HMS app, find both.

Result codes (HMS-Core/hms-push-serverdemo-java ResponceCodeProcesser):
  80000000 all accepted (requestId in vendor_msg_id)
  80100000 partial success: `msg` is a JSON string {"success", "failure", "<illegal_tokens_key>": [..]};
           the listed tokens -> invalid_token, the rest accepted. The key is UNCONFIRMED:
           `illegal_tokens_key`, default "illegal_tokens". An unparsable msg -> all accepted.
  80300007 all tokens invalid -> invalid_token
  80200001 / 80200003 OAuth error / expired -> unavailable, and the access token is dropped
  81000001 internal error -> unavailable
  80100001 parameter error, 80300002 forbidden, 80300008 too large, 80300010 too many tokens,
  any other code -> rejected
  HTTP 429 / 503 (flow control; the v1 code is UNCONFIRMED) -> throttled with Retry-After;
  other 5xx without a code -> unavailable.
The 4096-byte limit (80300008) is checked locally on the message without its token list. One
send() is one request: callers pass at most `max_batch` (<= 1000) tokens; more goes out as is and
comes back 80300010 (rejected), so the caller's split is the only split.
`HuaweiStyleAdapter` is the transport shared with Honor (connectors.honor), which has its own dialect.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx

from pushpipe.connectors.apns import is_alert
from pushpipe.connectors.base import (
    AdapterSession,
    InvalidNotification,
    Notification,
    Outcome,
    Secret,
    TokenResult,
    Vendor,
    mask_secrets,
    per_token,
    results,
    reveal,
)
from pushpipe.connectors.credentials import AccessTokenCache
from pushpipe.connectors.http import failure_code, failure_reason, json_object, new_client, parse_retry_after
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.oauth import TokenError, client_credentials
from pushpipe.connectors.spec import VendorSpec
from pushpipe.schemas.keys import message_key

PRODUCTION_URL = "https://push-api.cloud.huawei.com"
AUTH_URL = "https://oauth-login.cloud.huawei.com"
TOKEN_PATH = "/oauth2/v3/token"
MAX_TOKENS = 1000
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_S = 15 * 86_400  # android.ttl maximum per Huawei's API reference (not in VENDORS.md)
OK, PARTIAL, ALL_INVALID = "80000000", "80100000", "80300007"
AUTH_CODES = frozenset({"80200001", "80200003"})  # OAuth error / token expired: fetch a new token
INTERNAL_ERROR = "81000001"
THROTTLE_STATUSES = frozenset({429, 503})
CLICK_OPEN_APP = {"type": 3}


@dataclass(frozen=True)
class HmsConfig:
    """One Huawei app (AppID + AppSecret)."""

    vendor: ClassVar[Vendor] = Vendor.HMS

    app_id: str
    client_secret: Secret | str  # the AppSecret; stored as Secret
    client_id: str = ""  # empty: app_id
    base_url: str = PRODUCTION_URL
    auth_url: str = AUTH_URL
    token_path: str = TOKEN_PATH
    illegal_tokens_key: str = "illegal_tokens"  # UNCONFIRMED key in 80100000's msg
    verify: str | bool = True
    timeout_s: float = 10.0
    max_batch: int = MAX_TOKENS
    refresh_margin_s: float = 300.0

    def __post_init__(self) -> None:
        validate_client_config(self, MAX_TOKENS)

    def oauth_client_id(self) -> str:
        return self.client_id or self.app_id

    def secret(self) -> str:
        return reveal(self.client_secret)

    def token_url(self) -> str:
        return self.auth_url.rstrip("/") + self.token_path

    def send_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/v1/{quote(self.app_id, safe='')}/messages:send"


class ClientConfig(Protocol):
    """What HuaweiStyleAdapter needs from a Huawei-like vendor's config (HmsConfig, HonorConfig; frozen dataclasses)."""

    @property
    def app_id(self) -> str: ...

    @property
    def client_secret(self) -> Secret | str: ...

    @property
    def verify(self) -> str | bool: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_batch(self) -> int: ...

    @property
    def refresh_margin_s(self) -> float: ...

    def oauth_client_id(self) -> str: ...

    def secret(self) -> str: ...

    def token_url(self) -> str: ...

    def send_url(self) -> str: ...


C = TypeVar("C", bound=ClientConfig)


def validate_client_config(config: ClientConfig, max_tokens: int) -> None:
    """Mask the secret and check the shared fields (called from each config's __post_init__)."""
    mask_secrets(config, "client_secret")
    if not config.app_id or not config.secret():
        raise ValueError("app_id and client_secret are required")
    if config.timeout_s <= 0 or not 1 <= config.max_batch <= max_tokens:
        raise ValueError(f"timeout_s must be positive and max_batch within [1, {max_tokens}]")
    if not 0 <= config.refresh_margin_s < 3600:
        raise ValueError("refresh_margin_s must be within [0, 3600)")


# ---- pure builders -------------------------------------------------------------------------------

def data_string(n: Notification) -> str:
    """Custom data travels as one JSON string; msg_id is added so the app can ack."""
    return json.dumps({**{str(k): str(v) for k, v in n.data.items()}, "msg_id": n.msg_id},
                      separators=(",", ":"), ensure_ascii=False)


# Huawei's self-classification values (android.category): service and communication ones, applied for per app,
# and MARKETING. A service category named like one of them is sent as it; others are left to Huawei's own
# classification (no field).
SERVICE_CATEGORIES = frozenset({"IM", "VOIP", "SUBSCRIPTION", "TRAVEL", "HEALTH", "WORK", "ACCOUNT", "EXPRESS", "FINANCE",
                                "DEVICE_REMINDER", "SYSTEM_REMINDER", "MAIL", "PLAY_VOICE"})


def hms_category(n: Notification) -> str:
    """android.category by the policy's class: MARKETING for marketing, Huawei's own name for a service category."""
    if n.message_class == "marketing":
        return "MARKETING"
    name = n.category.strip().upper()
    return name if n.message_class == "service" and name in SERVICE_CATEGORIES else ""


def android_config(n: Notification) -> dict[str, Any]:
    android: dict[str, Any] = {"urgency": "HIGH" if n.priority == "high" else "NORMAL",
                               "ttl": f"{min(n.ttl_s, MAX_TTL_S)}s", "bi_tag": message_key(n.app_id, n.msg_id)}
    category = hms_category(n)
    if category:
        android["category"] = category
    if is_alert(n):
        android["notification"] = {"title": n.title, "body": n.body, "click_action": dict(CLICK_OPEN_APP)}
    return android


def build_message(n: Notification, tokens: Iterable[str]) -> dict[str, Any]:
    return {"android": android_config(n), "data": data_string(n), "token": list(tokens)}


def build_request(n: Notification, tokens: Iterable[str]) -> dict[str, Any]:
    return {"validate_only": False, "message": build_message(n, tokens)}


def payload_size(content: Mapping[str, Any]) -> int:
    """Bytes counted against the 4 KB limit: the message content without its token list."""
    counted = {k: v for k, v in content.items() if k != "token"}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode())


def check_size(content: Mapping[str, Any], limit: int = MAX_PAYLOAD_BYTES) -> None:
    size = payload_size(content)
    if size > limit:
        raise InvalidNotification("PayloadTooLarge", f"{size} > {limit} bytes")


def encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def encode_request(n: Notification, tokens: list[str]) -> bytes:
    """The request body; raises InvalidNotification when the message is over 4 KB."""
    request = build_request(n, tokens)
    check_size(request["message"])
    return encode(request)


# ---- responses -----------------------------------------------------------------------------------

def outcome_for_code(code: str, status: int) -> Outcome:
    """The Huawei result-code table (shared with Honor); `status` decides when there is no code."""
    if status in THROTTLE_STATUSES:
        return Outcome.THROTTLED
    if code == OK:
        return Outcome.ACCEPTED
    if code == ALL_INVALID:
        return Outcome.INVALID_TOKEN
    if code in AUTH_CODES or code == INTERNAL_ERROR or (not code and (status >= 500 or status == 401)):
        return Outcome.UNAVAILABLE
    return Outcome.REJECTED


def illegal_tokens(msg: str, key: str) -> list[str] | None:
    """The illegal tokens listed in an 80100000 reply's msg, or None if msg does not list them."""
    doc = json_object(msg.encode())
    listed = doc.get(key)
    return [str(t) for t in listed] if isinstance(listed, list) else None


def classify_response(tokens: list[str], status: int, headers: Mapping[str, str], body: bytes, now: float,
                      illegal_key: str = "illegal_tokens") -> list[TokenResult]:
    doc = json_object(body)
    code, msg, request_id = str(doc.get("code", "")), str(doc.get("msg", "")), str(doc.get("requestId", ""))
    if code == PARTIAL and status not in THROTTLE_STATUSES:
        illegal = illegal_tokens(msg, illegal_key)
        if illegal is not None:
            return per_token(tokens, dict.fromkeys(illegal, (Outcome.INVALID_TOKEN, code, "illegal token")), code, request_id)
        return results(tokens, Outcome.ACCEPTED, code, "partial success; illegal tokens not listed", msg_id=request_id)
    reason = msg or body[:200].decode(errors="replace")
    return results(tokens, outcome_for_code(code, status), code or str(status), reason,
                   parse_retry_after(headers.get("retry-after"), now), request_id)


def is_auth_failure(results: list[TokenResult]) -> bool:
    """The access token was refused (by code, or HTTP 401 without one): fetch a new one."""
    return bool(results) and results[0].outcome is Outcome.UNAVAILABLE and results[0].code in AUTH_CODES | {"401"}


# ---- transport -----------------------------------------------------------------------------------

@dataclass
class _Session:
    client: httpx.AsyncClient
    tokens: AccessTokenCache


class HuaweiStyleAdapter(AdapterSession[C, _Session], Generic[C]):
    """The transport of Huawei-like vendors: one request per send() (all its tokens), one cached
    client-credentials access token. Subclasses supply the dialect: encode(), headers(), classify().
    """

    vendor: Vendor

    @property
    def access_tokens(self) -> AccessTokenCache | None:
        return self._session.tokens if self._session else None

    def start(self) -> _Session:
        c = self.config
        client = new_client(c.verify, c.timeout_s)
        fetch = client_credentials(client, c.token_url(), c.oauth_client_id(), c.secret(), self._clock)
        tokens = AccessTokenCache(fetch, clock=self._clock, refresh_margin_s=c.refresh_margin_s, events=self.credential_events)
        return _Session(client, tokens)

    async def stop(self, session: _Session) -> None:
        await session.client.aclose()

    def encode(self, n: Notification, tokens: list[str]) -> bytes:
        """The request body; raises InvalidNotification."""
        raise NotImplementedError

    def headers(self, bearer: str) -> dict[str, str]:
        return {"authorization": f"Bearer {bearer}", "content-type": "application/json"}

    def classify(self, tokens: list[str], status: int, headers: Mapping[str, str], body: bytes) -> list[TokenResult]:
        raise NotImplementedError

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        session = self.session()
        if not tokens:
            return []
        try:
            body = self.encode(notification, tokens)
        except InvalidNotification as exc:
            return exc.results(tokens)
        try:
            bearer = await session.tokens.get()
        except TokenError as exc:
            return exc.results(tokens)
        try:
            resp = await session.client.post(self.config.send_url(), headers=self.headers(bearer), content=body)
        except (httpx.HTTPError, OSError) as exc:
            return results(tokens, Outcome.UNAVAILABLE, failure_code(exc), failure_reason(exc))
        answered = self.classify(tokens, resp.status_code, resp.headers, resp.content)
        if is_auth_failure(answered):
            session.tokens.invalidate(bearer)
        return answered


class HmsAdapter(HuaweiStyleAdapter[HmsConfig]):
    """VendorAdapter for Huawei Push Kit v1."""

    vendor = Vendor.HMS

    def encode(self, n: Notification, tokens: list[str]) -> bytes:
        return encode_request(n, tokens)

    def classify(self, tokens: list[str], status: int, headers: Mapping[str, str], body: bytes) -> list[TokenResult]:
        return classify_response(tokens, status, headers, body, self._clock(), self.config.illegal_tokens_key)


def client_credentials_entry(creds: Mapping[str, Any], sims: Mapping[str, Any]) -> dict[str, Any]:
    """SPEC.simulator_entry of HMS and Honor: app id, client id/secret; API and OAuth both on the simulator."""
    api = sims["api_url"] + creds["api_path"]
    fields = {k: v for k, v in creds.items() if k in ("app_id", "client_id", "client_secret")}
    return {**fields, "base_url": api, "auth_url": api, "verify": sims["ca_cert"]}


def huawei_token(hexed: str) -> str:
    """A token of Huawei's shape (HMS and Honor)."""
    return f"{hexed}IQAAAACy" + "d" * 72


SPEC = VendorSpec(
    vendor=Vendor.HMS, config=HmsConfig, adapter=HmsAdapter, simulator_entry=client_credentials_entry,
    payload=PayloadLimit(max_bytes=MAX_PAYLOAD_BYTES, data_as_string=True, overhead_bytes=384),
    daily_quota=True,  # "hms" is Huawei, as in DeviceEvent.vendor
    sample_token=huawei_token,
    receipts="console",
)
