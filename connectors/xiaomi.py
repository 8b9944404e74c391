"""Xiaomi MiPush server API adapter: `POST {base}/v3/message/regid`, many regids per form request.

Auth: header `Authorization: key=<AppSecret>` (it does not expire). See VENDORS.md section 4.

Request, application/x-www-form-urlencoded:
  registration_id          regids joined by ","; per-request maximum UNCONFIRMED → max_batch (default 1000)
  restricted_package_name  the app's package
  pass_through             0 (notification); 1 when there is neither title nor body (silent data message)
  notify_type              -1 (sound, vibration and light)
  title / description      under 50 / 128 characters, checked locally → REJECTED "TitleTooLong"/"BodyTooLong"
  payload                  JSON {**data, "msg_id"} for the app, under 4096 UTF-8 bytes → "PayloadTooLarge"
                           (whether Xiaomi counts it URL-encoded is UNCONFIRMED)
  time_to_live             ttl_s in ms, clamped to [1 s, 2 weeks]
  notify_id                only with a collapse_id: a stable int, so a newer message replaces the shown one
  extra.*                  at most 10: notify_effect=1 (open the app), channel_id when configured, and with
                           callback_url: callback (≤128 bytes), callback.param=msg_id, callback.type
                           (default 19 = 1 delivered | 2 clicked | 16 invalid target; Xiaomi recommends 16
                           over its retiring invalid-regid feedback API)

Response {result, reason, trace_id, code, description, data: {id, bad_regids?}}; the codes modeled
(0 is documented; the others are UNCONFIRMED and are what the simulator answers):
  0          accepted, except regids in data.bad_regids ("," joined; "badRegIds" also read) → INVALID_TOKEN
  20301      "No valid targets!": every regid is invalid → INVALID_TOKEN
  10022-24   request frequency over the limit → THROTTLED (Xiaomi sends no Retry-After)
  21301      authentication failed (wrong AppSecret) → REJECTED
  other ≠ 0  parameter errors (10016 missing, 10017 invalid, …) → REJECTED
  HTTP 429 → THROTTLED with Retry-After; HTTP 5xx, timeouts, transport errors → UNAVAILABLE.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import httpx

from pushpipe.connectors.base import InvalidNotification, Notification, Outcome, Secret, TokenResult, Vendor, VendorError, per_token, results, reveal
from pushpipe.connectors.batch_adapter import (
    BatchAdapter,
    BatchHttpConfig,
    app_credentials_entry,
    check_max,
    coded_reply,
    custom_data,
)
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.signing import compact_json, form_body, md5_hex
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://api.xmpush.xiaomi.com"
SEND_PATH = "/v3/message/regid"
TITLE_MAX_CHARS = 49  # "under 50"
DESCRIPTION_MAX_CHARS = 127  # "under 128"
PAYLOAD_MAX_BYTES = 4095  # "under 4 KB"
MAX_EXTRAS = 10
CALLBACK_MAX_BYTES = 128
TTL_MAX_MS = 14 * 86_400 * 1000
THROTTLE_CODES = frozenset({10022, 10023, 10024})
NO_VALID_TARGETS = 20301
CALLBACK_TYPES = 1 | 2 | 16


@dataclass(frozen=True, kw_only=True)
class XiaomiConfig(BatchHttpConfig):
    vendor: ClassVar[Vendor] = Vendor.XIAOMI
    secret_fields: ClassVar[tuple[str, ...]] = ("app_secret",)
    required_fields: ClassVar[tuple[str, ...]] = ("package_name",)

    app_secret: Secret | str
    package_name: str
    base_url: str = PRODUCTION_URL
    callback_url: str = ""  # receipt endpoint (extra.callback); "" = no receipts
    callback_type: int = CALLBACK_TYPES
    channel_id: str = ""  # Xiaomi notification channel (message class), optional

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.callback_url.encode()) > CALLBACK_MAX_BYTES:
            raise ValueError(f"callback_url must be at most {CALLBACK_MAX_BYTES} bytes")
        if not self.callback_type or self.callback_type & ~CALLBACK_TYPES:
            raise ValueError("callback_type must combine 1 (delivered), 2 (clicked) and 16 (invalid target)")


# ---- pure builders ---------------------------------------------------------------------------------

def notify_id(collapse_id: str) -> str:
    """A stable non-negative int per collapse id (Xiaomi replaces a shown notification with the same id)."""
    return str(int(md5_hex(collapse_id)[:7], 16))


def ttl_ms(ttl_s: int) -> str:
    return str(min(max(ttl_s, 1) * 1000, TTL_MAX_MS))


def build_extras(n: Notification, c: XiaomiConfig) -> dict[str, str]:
    extras = {"extra.notify_effect": "1"}
    if c.channel_id:
        extras["extra.channel_id"] = c.channel_id
    if callback := n.callback_url or c.callback_url:
        extras |= {"extra.callback": callback, "extra.callback.param": n.msg_id,
                   "extra.callback.type": str(c.callback_type)}
    check_max("extra count", len(extras), MAX_EXTRAS, "TooManyExtras")
    return extras


def build_fields(n: Notification, c: XiaomiConfig) -> dict[str, str]:
    """Every form field but registration_id; raises InvalidNotification."""
    check_max("title length", len(n.title), TITLE_MAX_CHARS, "TitleTooLong")
    check_max("description length", len(n.body), DESCRIPTION_MAX_CHARS, "BodyTooLong")
    if n.body and not n.title:
        raise InvalidNotification("MissingTitle", "Xiaomi notifications need a title")
    payload = compact_json(custom_data(n))
    check_max("payload bytes", len(payload.encode()), PAYLOAD_MAX_BYTES, "PayloadTooLarge")
    fields = {"restricted_package_name": c.package_name, "pass_through": "0" if n.title else "1",
              "notify_type": "-1", "title": n.title, "description": n.body, "payload": payload,
              "time_to_live": ttl_ms(n.ttl_s)}
    if n.collapse_id:
        fields["notify_id"] = notify_id(n.collapse_id)
    return fields | build_extras(n, c)


def auth_header(app_secret: str) -> dict[str, str]:
    return {"authorization": f"key={app_secret}"}


# ---- responses -------------------------------------------------------------------------------------

def bad_regids(data: object) -> set[str]:
    if not isinstance(data, dict):
        return set()
    raw = data.get("bad_regids") or data.get("badRegIds") or ""
    return {t for t in str(raw).split(",") if t}


def outcome_for(code: int) -> Outcome:
    if code == NO_VALID_TARGETS:
        return Outcome.INVALID_TOKEN
    if code in THROTTLE_CODES:
        return Outcome.THROTTLED
    return Outcome.REJECTED


def classify_response(tokens: list[str], status: int, headers: Mapping[str, str], body: bytes,
                      now: float) -> list[TokenResult]:
    try:
        doc = coded_reply(status, headers, body, now, "code")
    except VendorError as err:
        return err.results(tokens)
    code: int = doc["code"]
    if code != 0:
        return results(tokens, outcome_for(code), str(code), str(doc.get("reason") or doc.get("description", "")))
    data = doc.get("data")
    msg_id = str(data.get("id", "")) if isinstance(data, dict) else ""
    dead = {t: (Outcome.INVALID_TOKEN, "0", "BadRegId") for t in bad_regids(data)}
    return per_token(tokens, dead, "0", msg_id or str(doc.get("trace_id", "")))


# ---- adapter ---------------------------------------------------------------------------------------

class XiaomiAdapter(BatchAdapter[XiaomiConfig, dict[str, str]]):
    """VendorAdapter for MiPush: one form POST per chunk of regids."""

    vendor = Vendor.XIAOMI
    separator = ","

    def prepare(self, notification: Notification) -> dict[str, str]:
        return build_fields(notification, self.config)

    async def send_batch(self, client: httpx.AsyncClient, prepared: dict[str, str],
                         tokens: list[str]) -> list[TokenResult]:
        body = form_body({"registration_id": ",".join(tokens), **prepared})
        headers = {**auth_header(reveal(self.config.app_secret)),
                   "content-type": "application/x-www-form-urlencoded;charset=UTF-8"}
        status, resp_headers, content = await self.post(client, SEND_PATH, content=body, headers=headers)
        return classify_response(tokens, status, resp_headers, content, self._clock())


# Xiaomi's 4 KB is the payload field (data + msg_id); title and description are separate fields.
SPEC = VendorSpec(
    vendor=Vendor.XIAOMI, config=XiaomiConfig, adapter=XiaomiAdapter, simulator_entry=app_credentials_entry,
    payload=PayloadLimit(max_bytes=PAYLOAD_MAX_BYTES, title_max=TITLE_MAX_CHARS, body_max=DESCRIPTION_MAX_CHARS,
                         title_copies=0, body_copies=0, overhead_bytes=128, body_needs_title=True),
    daily_quota=True, unclassified_per_day=1,  # without a registered channel_id every message is "unclassified"
    sample_token=lambda hexed: hexed.ljust(44, "d"),
    receipts="message",
)
