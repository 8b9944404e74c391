"""Meizu (Flyme) push adapter: `POST {base}/garcia/api/server/push/varnished/pushByPushId`, signed forms.

Request, application/x-www-form-urlencoded: appId, pushIds (joined by ","), messageJson, and
sign = md5("k=v" of every other field, keys in ascending order, raw values, + appSecret). Meizu's README
caps pushIds at 1000; VENDORS.md and the brief at 100, which is our max_batch default (configurable).

messageJson (notification bar message; README of MEIZUPUSH/PushAPI):
  noticeBarInfo   {noticeBarType: 0, title (1-32 chars), content (1-100 chars)} → REJECTED
                  "MissingTitle"/"MissingBody"/"TitleTooLong"/"BodyTooLong" when outside
  clickTypeInfo   {clickType: 0 (open the app), parameters: {**data, msg_id}}
  pushTimeInfo    {offLine: 1 (0 when ttl_s is 0), validTime: hours within 1-72}
  advanceInfo     {notifyKey} only with a collapse_id (≤8 of [0-9A-Za-z_-], else a hash of it)
  extra           with callback_url: {callback (≤128 bytes), callback.param: msg_id, callback.type (3)}

Response {code, message, value, redirect, msgId} (code is a string):
  "200"     accepted; value maps a per-target code to the pushIds that failed with it (value.respTarget
            is read too, for the newer shape):
              110002 pushId unsubscribed, 110003 pushId illegal → INVALID_TOKEN
              110005, 110010 notification switch off → REJECTED, reason "notification_switch_off"
                (the pipeline marks the device switched off; Meizu is the only vendor with this signal)
              520 collapsed (more than 5 messages a minute to one device) → THROTTLED, retry_after_s 60
              501, 513, 519 push failed / overloaded → UNAVAILABLE; others (201 …) → REJECTED
  "110010"  the app pushes too fast → THROTTLED (no Retry-After given)
  "110019", "110051", "110011" daily caps → THROTTLED until 00:00 UTC+8 (reset time UNCONFIRMED)
  "1001" system error, "1003" server busy, "500" other error → UNAVAILABLE
  "1006" signature check failed, "110000"/"110001" bad appId/appKey, "1005" bad parameter, others → REJECTED
  HTTP 429 → THROTTLED with Retry-After; HTTP 5xx, timeouts, transport errors → UNAVAILABLE.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from pushpipe.connectors.base import Failure, InvalidNotification, Notification, Outcome, Secret, TokenResult, Vendor, VendorError, per_token, reveal
from pushpipe.connectors.batch_adapter import (
    BatchAdapter,
    BatchHttpConfig,
    app_credentials_entry,
    bad_response,
    check_max,
    custom_data,
    http_failure,
    require_title,
    seconds_until_china_hour,
)
from pushpipe.connectors.http import json_object
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.signing import compact_json, form_body, md5_hex, sorted_params
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://server-api-push.meizu.com"
SEND_PATH = "/garcia/api/server/push/varnished/pushByPushId"
TITLE_MAX_CHARS = 32
CONTENT_MAX_CHARS = 100
VALID_HOURS_MAX = 72
SWITCH_OFF = "notification_switch_off"
_NOTIFY_KEY = re.compile(r"[0-9A-Za-z_-]{1,8}")

TARGET_OUTCOMES: dict[str, tuple[Outcome, str]] = {
    "110002": (Outcome.INVALID_TOKEN, "Unsubscribed"),
    "110003": (Outcome.INVALID_TOKEN, "IllegalPushId"),
    "110005": (Outcome.REJECTED, SWITCH_OFF),
    "110010": (Outcome.REJECTED, SWITCH_OFF),
    "520": (Outcome.THROTTLED, "Collapsed"),
    "501": (Outcome.UNAVAILABLE, "PushFailed"),
    "513": (Outcome.UNAVAILABLE, "PushFailed"),
    "519": (Outcome.UNAVAILABLE, "Overloaded"),
}
COLLAPSE_WINDOW_S = 60.0
RATE_CODES = frozenset({"110010"})
DAILY_CODES = frozenset({"110019", "110051", "110011"})
UNAVAILABLE_CODES = frozenset({"1001", "1003", "500"})


@dataclass(frozen=True, kw_only=True)
class MeizuConfig(BatchHttpConfig):
    vendor: ClassVar[Vendor] = Vendor.MEIZU
    secret_fields: ClassVar[tuple[str, ...]] = ("app_secret",)
    required_fields: ClassVar[tuple[str, ...]] = ("app_id",)

    app_id: str
    app_secret: Secret | str
    base_url: str = PRODUCTION_URL
    max_batch: int = 100
    callback_url: str = ""  # receipt endpoint (extra.callback); "" = no receipts
    callback_type: int = 3  # 1 delivered, 2 clicked, 3 both

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.callback_url.encode()) > 128:
            raise ValueError("callback_url must be at most 128 bytes")
        if self.callback_type not in (1, 2, 3):
            raise ValueError("callback_type must be 1 (delivered), 2 (clicked) or 3 (both)")


# ---- pure builders ---------------------------------------------------------------------------------

def sign(params: Mapping[str, str], app_secret: str) -> str:
    return md5_hex(sorted_params(params) + app_secret)


def notify_key(collapse_id: str) -> str:
    return collapse_id if _NOTIFY_KEY.fullmatch(collapse_id) else md5_hex(collapse_id)[:8]


def valid_hours(ttl_s: int) -> int:
    return min(max(-(-ttl_s // 3600), 1), VALID_HOURS_MAX)


def check_text(n: Notification) -> None:
    require_title(n)
    if not n.body:
        raise InvalidNotification("MissingBody", "Meizu notifications need content")
    check_max("title length", len(n.title), TITLE_MAX_CHARS, "TitleTooLong")
    check_max("content length", len(n.body), CONTENT_MAX_CHARS, "BodyTooLong")


def build_message_json(n: Notification, c: MeizuConfig) -> str:
    """messageJson for a notification bar message; raises InvalidNotification."""
    check_text(n)
    message: dict[str, Any] = {
        "noticeBarInfo": {"noticeBarType": 0, "title": n.title, "content": n.body},
        "clickTypeInfo": {"clickType": 0, "parameters": custom_data(n)},
        "pushTimeInfo": {"offLine": int(n.ttl_s > 0), "validTime": valid_hours(n.ttl_s)},
    }
    if n.collapse_id:
        message["advanceInfo"] = {"notifyKey": notify_key(n.collapse_id)}
    if callback := n.callback_url or c.callback_url:
        message["extra"] = {"callback": callback, "callback.param": n.msg_id,
                            "callback.type": str(c.callback_type)}
    return compact_json(message)


def signed_form(c: MeizuConfig, message_json: str, tokens: list[str]) -> dict[str, str]:
    fields = {"appId": c.app_id, "pushIds": ",".join(tokens), "messageJson": message_json}
    return {**fields, "sign": sign(fields, reveal(c.app_secret))}


# ---- responses -------------------------------------------------------------------------------------

def target_map(value: object) -> dict[str, list[Any]]:
    """{code: [pushId, …]} from value, or from value.respTarget."""
    if not isinstance(value, dict):
        return {}
    inner = value.get("respTarget", value)
    return {str(k): v for k, v in inner.items() if isinstance(v, list)} if isinstance(inner, dict) else {}


def target_failures(value: object) -> dict[str, Failure]:
    failures: dict[str, Failure] = {}
    for code, targets in target_map(value).items():
        outcome, reason = TARGET_OUTCOMES.get(code, (Outcome.REJECTED, "TargetFailed"))
        failures |= {str(t): (outcome, code, reason) for t in targets}
    return failures


def call_error(code: str, message: str, now: float) -> VendorError:
    if code in RATE_CODES:
        return VendorError(Outcome.THROTTLED, code, message)
    if code in DAILY_CODES:
        return VendorError(Outcome.THROTTLED, code, message, seconds_until_china_hour(now))
    if code in UNAVAILABLE_CODES:
        return VendorError(Outcome.UNAVAILABLE, code, message)
    return VendorError(Outcome.REJECTED, code, message)


def with_retry_after(r: TokenResult) -> TokenResult:
    """A collapsed (520) pushId may be sent again after Meizu's one-minute window."""
    if r.code == "520":
        return TokenResult(r.token, r.outcome, r.code, r.reason, COLLAPSE_WINDOW_S, r.vendor_msg_id)
    return r


def classify_response(tokens: list[str], status: int, headers: Mapping[str, str], body: bytes,
                      now: float) -> list[TokenResult]:
    if err := http_failure(status, headers, now):
        return err.results(tokens)
    doc = json_object(body)
    code = str(doc.get("code", ""))
    if not code:
        return bad_response(status).results(tokens)
    if code != "200":
        return call_error(code, str(doc.get("message", "")), now).results(tokens)
    value = doc.get("value")
    msg_id = str(doc.get("msgId") or (value.get("msgId", "") if isinstance(value, dict) else ""))
    return [with_retry_after(r) for r in per_token(tokens, target_failures(value), "200", msg_id)]


# ---- adapter ---------------------------------------------------------------------------------------

class MeizuAdapter(BatchAdapter[MeizuConfig, str]):
    """VendorAdapter for Meizu push: one signed form POST per chunk of at most 100 pushIds."""

    vendor = Vendor.MEIZU
    separator = ","

    def prepare(self, notification: Notification) -> str:
        return build_message_json(notification, self.config)

    async def send_batch(self, client: httpx.AsyncClient, prepared: str, tokens: list[str]) -> list[TokenResult]:
        body = form_body(signed_form(self.config, prepared, tokens))
        headers = {"content-type": "application/x-www-form-urlencoded;charset=UTF-8"}
        status, resp_headers, content = await self.post(client, SEND_PATH, content=body, headers=headers)
        return classify_response(tokens, status, resp_headers, content, self._clock())


SPEC = VendorSpec(
    vendor=Vendor.MEIZU, config=MeizuConfig, adapter=MeizuAdapter, simulator_entry=app_credentials_entry,
    payload=PayloadLimit(title_max=TITLE_MAX_CHARS, body_max=CONTENT_MAX_CHARS, needs_title=True, needs_body=True),
    # Meizu's per-device caps exist (codes 110019/110051/110011) but their values are UNCONFIRMED: not counted
    sample_token=lambda hexed: f"{hexed}ULY" + "d" * 32,
    receipts="message",
)
