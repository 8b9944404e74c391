"""Umeng U-Push adapter, the fallback channel: listcast to many device tokens in one signed JSON request.

`POST {base}/api/send?sign=<md5("POST" + url + body + app_master_secret)>` where url is the request URL
without the query and body the exact JSON bytes sent. Body:
  appkey, timestamp (seconds; Umeng accepts it for 10 minutes), type "listcast",
  device_tokens    joined by ","; at most max_batch (500 in Umeng's SDK defaults, official figure UNCONFIRMED)
  payload          {display_type: "notification", body: {ticker, title, text, after_open: "go_app"},
                    extra: {**data, msg_id}} (≤4096 UTF-8 bytes of JSON, UNCONFIRMED → "PayloadTooLarge")
  production_mode  "true", or "false" for sandbox notifications
  policy           {expire_time: now + ttl_s (clamped to [60 s, 7 days]) as "YYYY-MM-DD HH:MM:SS" UTC+8}
  description      msg_id

Response {ret: "SUCCESS"|"FAIL", data: {msg_id | error_code, error_msg}}. A listcast has no per-token
result: on SUCCESS every token is ACCEPTED with the one msg_id (a dead token is only found out later,
if ever). FAIL codes modeled (UNCONFIRMED numbers, from Umeng's error table as mirrored by third parties):
  2027 signature wrong, 2028 timestamp expired, 2022 payload too long, 2015 too many device_tokens,
       2000/2021 app disabled/unknown, any other code → REJECTED
  2020 service being upgraded → UNAVAILABLE
  HTTP 429 (Umeng's rate-limit signal is UNCONFIRMED) → THROTTLED with Retry-After;
  HTTP 5xx, timeouts, transport errors → UNAVAILABLE.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from pushpipe.connectors.base import Notification, Outcome, Secret, TokenResult, Vendor, results, reveal
from pushpipe.connectors.batch_adapter import (
    CHINA_TZ,
    BatchAdapter,
    BatchHttpConfig,
    app_credentials_entry,
    bad_response,
    check_max,
    custom_data,
    http_failure,
    require_title,
)
from pushpipe.connectors.http import json_object
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.signing import compact_json, md5_hex
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://msgapi.umeng.com"
SEND_PATH = "/api/send"
PAYLOAD_MAX_BYTES = 4096
TTL_MIN_S, TTL_MAX_S = 60, 7 * 86_400
UNAVAILABLE_CODES = frozenset({"2020"})


@dataclass(frozen=True, kw_only=True)
class UmengConfig(BatchHttpConfig):
    vendor: ClassVar[Vendor] = Vendor.UMENG
    secret_fields: ClassVar[tuple[str, ...]] = ("app_master_secret",)
    required_fields: ClassVar[tuple[str, ...]] = ("app_key",)

    app_key: str
    app_master_secret: Secret | str
    base_url: str = PRODUCTION_URL
    max_batch: int = 500


# ---- pure builders ---------------------------------------------------------------------------------

def sign(url: str, body: bytes, app_master_secret: str) -> str:
    return md5_hex("POST" + url + body.decode() + app_master_secret)


def expire_time(now: float, ttl_s: int) -> str:
    at = now + min(max(ttl_s, TTL_MIN_S), TTL_MAX_S)
    return dt.datetime.fromtimestamp(at, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def build_payload(n: Notification) -> dict[str, Any]:
    """The listcast payload; raises InvalidNotification."""
    require_title(n)
    payload = {"display_type": "notification",
               "body": {"ticker": n.title, "title": n.title, "text": n.body, "after_open": "go_app"},
               "extra": custom_data(n)}
    check_max("payload bytes", len(compact_json(payload).encode()), PAYLOAD_MAX_BYTES, "PayloadTooLarge")
    return payload


def build_body(c: UmengConfig, n: Notification, payload: Mapping[str, Any], tokens: list[str], now: float) -> bytes:
    return compact_json({
        "appkey": c.app_key, "timestamp": str(int(now)), "type": "listcast", "device_tokens": ",".join(tokens),
        "payload": payload, "production_mode": str(n.environment == "production").lower(),
        "policy": {"expire_time": expire_time(now, n.ttl_s)}, "description": n.msg_id,
    }).encode()


def signed_path(c: UmengConfig, body: bytes) -> str:
    """/api/send?sign=…, signed over the full URL the request goes to."""
    return f"{SEND_PATH}?sign={sign(c.url(SEND_PATH), body, reveal(c.app_master_secret))}"


# ---- responses -------------------------------------------------------------------------------------

def classify_response(tokens: list[str], status: int, headers: Mapping[str, str], body: bytes,
                      now: float) -> list[TokenResult]:
    doc = json_object(body)
    raw = doc.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if doc.get("ret") == "SUCCESS" and status == 200:
        return results(tokens, Outcome.ACCEPTED, "SUCCESS", msg_id=str(data.get("msg_id") or data.get("task_id", "")))
    if err := http_failure(status, headers, now):
        return err.results(tokens)
    code = str(data.get("error_code", ""))
    if doc.get("ret") != "FAIL" or not code:
        return bad_response(status).results(tokens)
    outcome = Outcome.UNAVAILABLE if code in UNAVAILABLE_CODES else Outcome.REJECTED
    return results(tokens, outcome, code, str(data.get("error_msg", "")))


# ---- adapter ---------------------------------------------------------------------------------------

class UmengAdapter(BatchAdapter[UmengConfig, tuple[Notification, dict[str, Any]]]):
    """VendorAdapter for Umeng listcast (the fallback channel): one signed POST per chunk."""

    vendor = Vendor.UMENG
    separator = ","

    def prepare(self, notification: Notification) -> tuple[Notification, dict[str, Any]]:
        return notification, build_payload(notification)

    async def send_batch(self, client: httpx.AsyncClient, prepared: tuple[Notification, dict[str, Any]],
                         tokens: list[str]) -> list[TokenResult]:
        n, payload = prepared
        body = build_body(self.config, n, payload, tokens, self._clock())
        status, headers, content = await self.post(client, signed_path(self.config, body), content=body,
                                                   headers={"content-type": "application/json"})
        return classify_response(tokens, status, headers, content, self._clock())


SPEC = VendorSpec(
    vendor=Vendor.UMENG, config=UmengConfig, adapter=UmengAdapter, simulator_entry=app_credentials_entry,
    payload=PayloadLimit(max_bytes=PAYLOAD_MAX_BYTES, title_copies=2, overhead_bytes=256, needs_title=True),  # UNCONFIRMED
    sample_token=None,  # the fallback channel: devices do not register with Umeng
)
