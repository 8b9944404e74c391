"""Firebase Cloud Messaging HTTP v1 adapter: one request per token, OAuth2 from a service-account key.

Auth: an RS256 JWT (iss = client_email, scope = firebase.messaging, aud = token_uri, iat/exp 1 h,
kid = private_key_id) is exchanged at the key's `token_uri` (JWT-bearer grant) for an access
token, cached and refreshed `refresh_margin_s` before it expires, and dropped on a 401 so the
next send fetches a new one (the 401'd tokens come back `unavailable`; the pipeline retries).

Send: `POST {base_url}/v1/projects/{project_id}/messages:send`, body {"message": {...}}, up to
`max_streams` requests in flight on one HTTP/2 connection. Multicast is gone from FCM (VENDORS.md
section 2), so `max_batch` only bounds one send() call; it fans out one request per token.

Errors (FcmError.errorCode in the error details):
  UNREGISTERED 404                        -> invalid_token
  INVALID_ARGUMENT 400                    -> invalid_token if a field violation is message.token,
                                             else rejected
  SENDER_ID_MISMATCH 403, THIRD_PARTY_AUTH_ERROR 401 -> rejected (configuration)
  401 without an errorCode (our access token) -> unavailable, and the access token is dropped
  QUOTA_EXCEEDED 429                      -> throttled (Retry-After honoured)
  UNAVAILABLE 503, INTERNAL 500, other 5xx -> unavailable (Retry-After honoured)
  anything else                           -> rejected
Payload: notification + data (JSON) over 4096 bytes -> rejected locally, without a network call.
FCM has no delivery receipts: a 200 only means "accepted" (message name in vendor_msg_id).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushpipe.connectors.apns import PRIORITY as APNS_PRIORITY
from pushpipe.connectors.apns import is_alert
from pushpipe.connectors.base import AdapterSession, InvalidNotification, Notification, Outcome, Secret, TokenResult, Vendor, mask_secrets, reveal
from pushpipe.connectors.credentials import AccessToken, AccessTokenCache
from pushpipe.connectors.h2client import H2Client, H2Error
from pushpipe.connectors.http import json_object, new_client, parse_retry_after, ssl_context, transport_failure
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.oauth import TokenError, request_token
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_S = 28 * 86_400  # FCM's default and maximum
MAX_APNS_COLLAPSE_ID_BYTES = 64
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


# ---- credentials and config ----------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service-account JSON key that FCM auth needs."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: Secret
    token_uri: str

    @classmethod
    def parse(cls, text: str) -> ServiceAccount:
        doc = json.loads(text)
        missing = [k for k in ("project_id", "client_email", "private_key", "token_uri") if not doc.get(k)]
        if doc.get("type") != "service_account" or missing:
            raise ValueError(f"not a service-account key (type={doc.get('type')!r}, missing {missing})")
        return cls(doc["project_id"], doc["client_email"], doc.get("private_key_id", ""),
                   Secret(doc["private_key"]), doc["token_uri"])

    def signing_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_key.reveal().encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a service-account key must be an RSA private key")
        return key


@dataclass(frozen=True)
class FcmConfig:
    """One Firebase project, authenticated by one service-account key."""

    vendor: ClassVar[Vendor] = Vendor.FCM

    service_account: Secret | str  # the JSON key's text or a path to it; stored as Secret
    project_id: str = ""  # empty: the key's project_id
    token_uri: str = ""  # empty: the key's token_uri
    base_url: str = PRODUCTION_URL
    scope: str = SCOPE
    verify: str | bool = True  # CA bundle path, True (system CAs) or False
    timeout_s: float = 10.0
    max_streams: int = 100  # concurrent requests (HTTP/2 streams)
    max_batch: int = 1000  # tokens per send(); each is its own request
    refresh_margin_s: float = 300.0  # fetch a new access token this long before expiry

    def __post_init__(self) -> None:
        mask_secrets(self, "service_account")
        if self.timeout_s <= 0 or self.max_streams < 1 or self.max_batch < 1:
            raise ValueError("timeout_s, max_streams and max_batch must be positive")
        if not 0 <= self.refresh_margin_s < ASSERTION_LIFETIME_S:
            raise ValueError("refresh_margin_s must be within [0, 3600)")
        try:
            self.account().signing_key()  # validate the key at start
        except OSError as exc:
            raise ValueError(f"service_account: cannot read the key: {exc}") from exc

    def account(self) -> ServiceAccount:
        raw = reveal(self.service_account)
        return ServiceAccount.parse(raw if raw.lstrip().startswith("{") else Path(raw).read_text())

    def project(self) -> str:
        return self.project_id or self.account().project_id

    def token_url(self) -> str:
        return self.token_uri or self.account().token_uri

    def send_path(self) -> str:
        return f"/v1/projects/{quote(self.project(), safe='')}/messages:send"

    def send_url(self) -> str:
        return self.base_url.rstrip("/") + self.send_path()


# ---- pure builders -------------------------------------------------------------------------------

def check_data(data: Mapping[str, str]) -> None:
    for key in data:
        if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
            raise InvalidNotification("InvalidDataKey", f"{key!r} is reserved by FCM")


def android_config(n: Notification) -> dict[str, Any]:
    config: dict[str, Any] = {"priority": "high" if n.priority == "high" else "normal",
                              "ttl": f"{min(n.ttl_s, MAX_TTL_S)}s"}
    if n.collapse_id:
        config["collapse_key"] = n.collapse_id
    return config


def apns_config(n: Notification, now: float) -> dict[str, Any]:
    """The `apns` block for iOS devices registered with FCM (same rules as connectors.apns)."""
    alert = is_alert(n)
    headers = {"apns-priority": APNS_PRIORITY[n.priority] if alert else "5",
               "apns-push-type": "alert" if alert else "background",
               "apns-expiration": "0" if n.ttl_s == 0 else str(int(now) + min(n.ttl_s, MAX_TTL_S))}
    if n.collapse_id:
        if len(n.collapse_id.encode()) > MAX_APNS_COLLAPSE_ID_BYTES:
            raise InvalidNotification("BadCollapseId", f"over {MAX_APNS_COLLAPSE_ID_BYTES} bytes")
        headers["apns-collapse-id"] = n.collapse_id
    aps: dict[str, Any] = {"mutable-content": 1} if alert else {"content-available": 1}
    if alert and n.category:
        aps["category"] = n.category
    return {"headers": headers, "payload": {"aps": aps}}


def build_message(n: Notification, token: str, now: float) -> dict[str, Any]:
    """The v1 `message` for one token; raises InvalidNotification. Data values become strings."""
    data = {str(k): str(v) for k, v in n.data.items()}
    check_data(data)
    message: dict[str, Any] = {"token": token, "data": {**data, "msg_id": n.msg_id},
                               "android": android_config(n), "apns": apns_config(n, now)}
    if is_alert(n):
        message["notification"] = {"title": n.title, "body": n.body}
    return message


def payload_size(message: Mapping[str, Any]) -> int:
    """Bytes FCM counts against the 4096 limit: the notification and data, JSON-encoded."""
    counted = {k: message[k] for k in ("notification", "data") if k in message}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode())


def check_size(message: Mapping[str, Any]) -> None:
    size = payload_size(message)
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidNotification("PayloadTooLarge", f"{size} > {MAX_PAYLOAD_BYTES} bytes")


def encode_request(message: Mapping[str, Any]) -> bytes:
    return json.dumps({"message": message}, separators=(",", ":"), ensure_ascii=False).encode()


def service_account_assertion(account: ServiceAccount, token_uri: str, scope: str, now: float) -> str:
    """The signed JWT exchanged at `token_uri` for an access token."""
    claims = {"iss": account.client_email, "scope": scope, "aud": token_uri,
              "iat": int(now), "exp": int(now) + ASSERTION_LIFETIME_S}
    headers = {"kid": account.private_key_id} if account.private_key_id else None
    return jwt.encode(claims, account.signing_key(), algorithm="RS256", headers=headers)


# ---- responses -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FcmError:
    status: str  # google.rpc status, e.g. NOT_FOUND
    error_code: str  # FcmError.errorCode, e.g. UNREGISTERED ("" if absent)
    fields: tuple[str, ...]  # BadRequest field violations
    message: str


def parse_error(body: bytes) -> FcmError:
    error = json_object(body).get("error")
    if not isinstance(error, dict):
        return FcmError("", "", (), body[:200].decode(errors="replace"))
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    code = next((str(d.get("errorCode", "")) for d in details if d.get("@type") == _FCM_ERROR_TYPE), "")
    fields = tuple(str(v.get("field", "")) for d in details if d.get("@type") == _BAD_REQUEST_TYPE
                   for v in d.get("fieldViolations") or [] if isinstance(v, dict))
    return FcmError(str(error.get("status", "")), code, fields, str(error.get("message", "")))


def outcome_for(status: int, error: FcmError) -> Outcome:
    code = error.error_code
    if status == 200:
        return Outcome.ACCEPTED
    if code == "UNREGISTERED" or ((code or error.status) == "INVALID_ARGUMENT" and "message.token" in error.fields):
        return Outcome.INVALID_TOKEN
    if code in ("SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"):
        return Outcome.REJECTED
    if code == "QUOTA_EXCEEDED" or status == 429:
        return Outcome.THROTTLED
    if code in ("UNAVAILABLE", "INTERNAL") or status >= 500 or is_auth_failure(status, error):
        return Outcome.UNAVAILABLE
    return Outcome.REJECTED


def is_auth_failure(status: int, error: FcmError) -> bool:
    """Our access token was refused (expired or revoked): fetch a new one."""
    return status == 401 and error.error_code != "THIRD_PARTY_AUTH_ERROR"


def classify_response(token: str, status: int, headers: Mapping[str, str], body: bytes, now: float) -> TokenResult:
    if status == 200:
        name = str(json_object(body).get("name", ""))
        return TokenResult(token, Outcome.ACCEPTED, "200", vendor_msg_id=name)
    error = parse_error(body)
    return TokenResult(token, outcome_for(status, error), str(status), error.error_code or error.status or error.message,
                       parse_retry_after(headers.get("retry-after"), now))


# ---- transport -----------------------------------------------------------------------------------

@dataclass
class _Session:
    client: httpx.AsyncClient  # OAuth token requests
    sender: H2Client  # sends: one request per token, over one HTTP/2 connection
    streams: asyncio.Semaphore
    tokens: AccessTokenCache
    send_path: str


class FcmAdapter(AdapterSession[FcmConfig, _Session]):
    """VendorAdapter for FCM HTTP v1. One HTTP/2 connection for sends; at most max_streams requests in flight."""

    vendor = Vendor.FCM

    @property
    def access_tokens(self) -> AccessTokenCache | None:
        return self._session.tokens if self._session else None

    def start(self) -> _Session:
        c = self.config
        client = new_client(c.verify, c.timeout_s)
        account, token_url = c.account(), c.token_url()

        async def fetch() -> AccessToken:
            assertion = service_account_assertion(account, token_url, c.scope, self._clock())
            form = {"grant_type": JWT_BEARER, "assertion": assertion}
            return await request_token(client, token_url, form, self._clock)

        tokens = AccessTokenCache(fetch, clock=self._clock, refresh_margin_s=c.refresh_margin_s, events=self.credential_events)
        sender = H2Client(c.base_url, ssl_context(c.verify), c.timeout_s)
        return _Session(client, sender, asyncio.Semaphore(c.max_streams), tokens, c.send_path())

    async def stop(self, session: _Session) -> None:
        await asyncio.gather(session.client.aclose(), session.sender.aclose())

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        session, now = self.session(), self._clock()
        try:
            template = build_message(notification, "", now)
            check_size(template)
        except InvalidNotification as exc:
            return exc.results(tokens)
        try:
            bearer = await session.tokens.get()
        except TokenError as exc:
            return exc.results(tokens)
        sends = (self._send_one(session, bearer, t, encode_request({**template, "token": t})) for t in tokens)
        return list(await asyncio.gather(*sends))

    async def _send_one(self, s: _Session, bearer: str, token: str, body: bytes) -> TokenResult:
        headers = {"authorization": f"Bearer {bearer}", "content-type": "application/json"}
        async with s.streams:
            try:
                resp = await s.sender.post(s.send_path, headers, body)
            except H2Error as exc:  # connect, TLS, reset, GOAWAY, timeouts
                return transport_failure(token, exc)
        result = classify_response(token, resp.status, resp.headers, resp.body, self._clock())
        if result.code == "401" and result.outcome is Outcome.UNAVAILABLE:  # our access token was refused
            s.tokens.invalidate(bearer)
        return result


def simulator_entry(creds: Mapping[str, Any], sims: Mapping[str, Any]) -> dict[str, Any]:
    """The simulator's service-account key; its token_uri is Google's, so point token_uri at the simulator."""
    api = sims["api_url"] + creds["api_path"]
    return {"service_account": creds["service_account"], "base_url": api, "token_uri": api + "/token",
            "verify": sims["ca_cert"]}


SPEC = VendorSpec(
    vendor=Vendor.FCM, config=FcmConfig, adapter=FcmAdapter, simulator_entry=simulator_entry,
    payload=PayloadLimit(max_bytes=MAX_PAYLOAD_BYTES, overhead_bytes=192,  # FCM counts notification + data only
                         reserved_data=(RESERVED_DATA_KEYS, RESERVED_DATA_PREFIXES)),
    sample_token=lambda hexed: f"{hexed}:APA91b" + "d" * 100,
)
