"""Umeng U-Push simulator (the fallback channel): `POST /api/send?sign=…` with a JSON listcast body.

Checks, in order: outage (HTTP 503), JSON body (2008), appkey (2021 unknown), sign = md5("POST" +
request URL without the query + body + app_master_secret) (2027), timestamp (10 or 13 digits) within
10 minutes (2028), type "listcast" (only type modeled; others 2031 here), device_tokens 1-500 (2015),
payload JSON ≤4096 bytes (2022), display_type "notification" with body title/text/ticker (1009/1010/
1008), production_mode "true"/"false" (5002); then injected faults: HTTP 503; HTTP 429 + Retry-After
for throttle_rate and quota_per_s (Umeng's own rate signal is UNCONFIRMED); daily_quota is not
modeled. A FAIL is HTTP 400 {"ret": "FAIL", "data": {"error_code", "error_msg"}}; a SUCCESS is HTTP 200
{"ret": "SUCCESS", "data": {"msg_id": "ul…"}}.

A listcast has no per-token result, so every token of an accepted request is recorded as accepted,
unregistered_tokens included (Umeng drops those silently later). No receipts.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushpipe.connectors.http import json_object
from pushpipe.connectors.signing import md5_hex
from pushpipe.simulators.batchsim import BatchVendorSim, Reply, Request, Route, json_reply, new_id, too_many_requests, unavailable

PATH = "/api/send"
MAX_TOKENS = 500
MAX_PAYLOAD_BYTES = 4096
TIMESTAMP_WINDOW_S = 600


def fail(code: str, message: str) -> Reply:
    return json_reply({"ret": "FAIL", "data": {"error_code": code, "error_msg": message}}, 400)


def body_error(b: Mapping[str, Any], now: float) -> Reply | None:
    """Umeng's checks on a signed listcast body, in its order."""
    stamp = str(b.get("timestamp", ""))
    if not (stamp.isdigit() and len(stamp) in (10, 13)) or abs(int(stamp[:10]) - now) > TIMESTAMP_WINDOW_S:
        return fail("2028", "时间戳已过期")
    if b.get("type") != "listcast":
        return fail("2031", "only listcast is simulated")
    tokens = [t for t in str(b.get("device_tokens", "")).split(",") if t]
    if not 1 <= len(tokens) <= MAX_TOKENS:
        return fail("2015", f"device_tokens must hold 1-{MAX_TOKENS} tokens")
    return payload_error(b.get("payload")) or (None if b.get("production_mode") in ("true", "false")
                                                else fail("5002", "production_mode must be true or false"))


def payload_error(payload: Any) -> Reply | None:
    if not isinstance(payload, dict):
        return fail("1001", "payload is required")
    if len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
        return fail("2022", "payload长度过长")
    body = payload.get("body") if payload.get("display_type") == "notification" else None
    if not isinstance(body, dict):
        return fail("1004", "display_type notification with a body is required")
    missing = [(code, key) for code, key in (("1008", "ticker"), ("1009", "title"), ("1010", "text"))
               if not body.get(key)]
    return fail(missing[0][0], f"body.{missing[0][1]} is required") if missing else None


class UmengSimulator(BatchVendorSim):
    name = "umeng"
    prefixes: tuple[str, ...] = (PATH,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apps: dict[str, str] = {}  # appkey -> app_master_secret

    @staticmethod
    def new_credentials() -> dict[str, str]:
        return {"app_key": secrets.token_hex(12), "app_master_secret": secrets.token_hex(16)}

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        self.apps[creds["app_key"]] = creds["app_master_secret"]

    def targets(self, request: Request) -> list[str]:
        return [t for t in str(json_object(request.body).get("device_tokens", "")).split(",") if t]

    def routes(self) -> Mapping[str, Route]:
        return {PATH: self.send}

    def send(self, request: Request, now: float) -> Reply:
        b = json_object(request.body)
        if not b:
            return fail("2008", "json解析错误")
        secret = self.apps.get(str(b.get("appkey", "")))
        if secret is None:
            return fail("2021", "appkey不存在")
        expected = md5_hex("POST" + request.url + request.body.decode(errors="replace") + secret)  # restated
        if request.query.get("sign") != expected:
            return fail("2027", "签名不正确")
        if error := body_error(b, now):
            return error
        tokens = [t for t in str(b["device_tokens"]).split(",") if t]
        fault = self.fault(now, len(tokens), daily=False)
        if fault == "unavailable":
            return unavailable()
        if fault == "throttled":
            return too_many_requests(self.state.config.retry_after_s)
        msg_id = new_id("ul")
        self.record(tokens, msg_id, b["payload"], now)
        return json_reply({"ret": "SUCCESS", "data": {"msg_id": msg_id}})


def create(state_dir: Path) -> UmengSimulator:
    """The simulator with its dev credentials (state_dir/umeng/credentials.json) registered."""
    return UmengSimulator.create(state_dir)
