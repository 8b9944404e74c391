"""Honor Push adapter: Huawei-like (Honor's push grew out of HMS), with its own request dialect.

Transport and auth are HMS's (`connectors.hms.HuaweiStyleAdapter`, `connectors.oauth`); this module
holds only what differs. Everything below except the host names is **UNCONFIRMED** (no primary
source; third-party SDKs = 2nd) and configurable:

- Auth: OIDC client_credentials, form grant_type/client_id/client_secret, at
  `{auth_url}{token_path}` = https://iam.developer.hihonor.com + "/auth/token". Path choice: the
  brief and one Go SDK use /auth/token; two other SDKs use the Keycloak path
  /auth/realms/developer/protocol/openid-connect/token (2nd). Set `token_path` to switch; the
  simulator answers both. client_id is Honor's own (not the AppID), so it is required.
- Send: `POST {base_url}/api/v1/{app_id}/sendMessage` with `Authorization: Bearer` and a
  `timestamp` header (epoch milliseconds). Body (2nd; camelCase, no "message" wrapper):
      {"data": "<JSON string of data + msg_id>", "notification"?: {title, body},
       "android": {"ttl": "Ns", "biTag": "<app>|<msg_id>", "notification"?: {title, body,
                   "clickAction": {"type": 3}, "importance": "NORMAL"|"LOW"}}, "token": [..]}
  biTag = "<app>|<msg_id>" (schemas/keys.py message_key), so Huawei-style receipts ({"statuses": [{biTag, token, status, ...}]}) match up.
- Reply (2nd): {"code": 200, "message", "data": {"sendResult", "requestId", "failTokens": [..],
  "expireTokens": [..]}}. A code in `ok_codes` (default "200" and HMS's "80000000") means the
  request was processed: tokens in expireTokens -> invalid_token, in failTokens ->
  `fail_tokens_outcome` (default invalid_token), the rest accepted. Any other code goes through
  the Huawei table (connectors.hms.outcome_for_code): 80300007 invalid_token, 80200001/80200003
  unavailable + new access token, 81000001 unavailable, HTTP 429/503 throttled (Retry-After), other
  codes rejected. An 80100000 reply with a Huawei-style msg is handled as HMS does.
- Limits: `max_tokens` per request (default 1000) and `max_payload_bytes` (default 4096, checked
  locally on the request without its token list), both Huawei's values.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from pushpipe.connectors.apns import is_alert
from pushpipe.connectors.base import Notification, Outcome, Secret, TokenResult, Vendor, reveal
from pushpipe.connectors.hms import (
    CLICK_OPEN_APP,
    MAX_PAYLOAD_BYTES,
    PARTIAL,
    HuaweiStyleAdapter,
    check_size,
    client_credentials_entry,
    data_string,
    encode,
    huawei_token,
    validate_client_config,
)
from pushpipe.connectors.hms import classify_response as hms_classify
from pushpipe.connectors.http import json_object
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.spec import VendorSpec
from pushpipe.schemas.keys import message_key

PRODUCTION_URL = "https://push-api.cloud.hihonor.com"
AUTH_URL = "https://iam.developer.hihonor.com"
TOKEN_PATH = "/auth/token"
KEYCLOAK_TOKEN_PATH = "/auth/realms/developer/protocol/openid-connect/token"


@dataclass(frozen=True)
class HonorConfig:
    """One Honor app: AppID plus the OAuth client id and secret from Honor's developer console."""

    vendor: ClassVar[Vendor] = Vendor.HONOR

    app_id: str
    client_id: str
    client_secret: Secret | str  # stored as Secret
    base_url: str = PRODUCTION_URL
    auth_url: str = AUTH_URL
    token_path: str = TOKEN_PATH  # UNCONFIRMED; KEYCLOAK_TOKEN_PATH is the alternative
    ok_codes: tuple[str, ...] = ("200", "80000000")  # UNCONFIRMED
    fail_tokens_outcome: Outcome | str = Outcome.INVALID_TOKEN  # UNCONFIRMED meaning of failTokens
    max_tokens: int = 1000  # UNCONFIRMED per-request maximum
    max_payload_bytes: int = MAX_PAYLOAD_BYTES  # UNCONFIRMED (Huawei's value)
    verify: str | bool = True
    timeout_s: float = 10.0
    max_batch: int = 1000
    refresh_margin_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ValueError("client_id is required (Honor's OAuth client id is not the AppID)")
        object.__setattr__(self, "ok_codes", tuple(str(c) for c in self.ok_codes))
        object.__setattr__(self, "fail_tokens_outcome", Outcome(self.fail_tokens_outcome))
        if self.max_tokens < 1 or self.max_payload_bytes < 1:
            raise ValueError("max_tokens and max_payload_bytes must be positive")
        validate_client_config(self, self.max_tokens)

    def oauth_client_id(self) -> str:
        return self.client_id

    def secret(self) -> str:
        return reveal(self.client_secret)

    def token_url(self) -> str:
        return self.auth_url.rstrip("/") + self.token_path

    def send_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/api/v1/{quote(self.app_id, safe='')}/sendMessage"


# ---- pure builders -------------------------------------------------------------------------------


def importance(n: Notification) -> str:
    """Honor's class of the message: LOW for marketing (资讯营销), NORMAL for service; unclassed, by priority."""
    if n.message_class:
        return "LOW" if n.message_class == "marketing" else "NORMAL"
    return "LOW" if n.priority == "low" else "NORMAL"

def android_config(n: Notification) -> dict[str, Any]:
    android: dict[str, Any] = {"ttl": f"{n.ttl_s}s", "biTag": message_key(n.app_id, n.msg_id)}
    if is_alert(n):
        android["notification"] = {"title": n.title, "body": n.body, "clickAction": dict(CLICK_OPEN_APP),
                                   "importance": importance(n)}
    return android


def build_request(n: Notification, tokens: Iterable[str]) -> dict[str, Any]:
    request: dict[str, Any] = {"data": data_string(n), "android": android_config(n), "token": list(tokens)}
    if is_alert(n):
        request["notification"] = {"title": n.title, "body": n.body}
    return request


def encode_request(n: Notification, tokens: list[str], max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The request body; raises InvalidNotification when it is over the limit (tokens not counted)."""
    request = build_request(n, tokens)
    check_size(request, max_payload_bytes)
    return encode(request)


def timestamp_header(now: float) -> str:
    return str(int(now * 1000))


# ---- responses -----------------------------------------------------------------------------------

def _listed(data: Mapping[str, Any], key: str) -> frozenset[str]:
    value = data.get(key)
    return frozenset(str(t) for t in value) if isinstance(value, list) else frozenset()


def _data(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    data = doc.get("data")
    return data if isinstance(data, dict) else {}


def _processed(doc: Mapping[str, Any], status: int, config: HonorConfig) -> bool:
    """Honor's own success shape (not an error, not an HMS-style partial success)."""
    code = str(doc.get("code", ""))
    return status < 400 and code in config.ok_codes and code != PARTIAL


def classify_response(tokens: list[str], status: int, headers: Mapping[str, str], body: bytes, now: float,
                      config: HonorConfig) -> list[TokenResult]:
    doc = json_object(body)
    if not _processed(doc, status, config):
        return hms_classify(tokens, status, headers, _as_hms(doc, body), now)
    data = _data(doc)
    code, request_id = str(doc["code"]), str(data.get("requestId", ""))
    expired, failed = _listed(data, "expireTokens"), _listed(data, "failTokens")
    fail_outcome = Outcome(config.fail_tokens_outcome)

    def result(token: str) -> TokenResult:
        if token in expired:
            return TokenResult(token, Outcome.INVALID_TOKEN, code, "expireToken")
        if token in failed:
            return TokenResult(token, fail_outcome, code, "failToken")
        return TokenResult(token, Outcome.ACCEPTED, code, vendor_msg_id=request_id)

    return [result(t) for t in tokens]


def _as_hms(doc: Mapping[str, Any], body: bytes) -> bytes:
    """Honor's {"code", "message", "data"} seen through HMS's {"code", "msg", "requestId"}."""
    if not doc:
        return body
    data = _data(doc)
    msg = doc.get("msg", doc.get("message", ""))
    return json.dumps({"code": doc.get("code", ""), "msg": msg, "requestId": data.get("requestId", "")}).encode()


# ---- adapter -------------------------------------------------------------------------------------

class HonorAdapter(HuaweiStyleAdapter[HonorConfig]):
    """VendorAdapter for Honor Push: HMS transport and auth, Honor's dialect."""

    vendor = Vendor.HONOR

    def encode(self, n: Notification, tokens: list[str]) -> bytes:
        return encode_request(n, tokens, self.config.max_payload_bytes)

    def headers(self, bearer: str) -> dict[str, str]:
        return {**super().headers(bearer), "timestamp": timestamp_header(self._clock())}

    def classify(self, tokens: list[str], status: int, headers: Mapping[str, str], body: bytes) -> list[TokenResult]:
        return classify_response(tokens, status, headers, body, self._clock(), self.config)


SPEC = VendorSpec(
    vendor=Vendor.HONOR, config=HonorConfig, adapter=HonorAdapter, simulator_entry=client_credentials_entry,
    payload=PayloadLimit(max_bytes=MAX_PAYLOAD_BYTES, title_copies=2, body_copies=2, data_as_string=True,
                         overhead_bytes=384),  # 4096 UNCONFIRMED (HonorConfig.max_payload_bytes' default)
    daily_quota=True,
    sample_token=huawei_token,
    receipts="console",
)
