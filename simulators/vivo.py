"""vivo push simulator: auth, single send and list push under `/message/` (JSON in, JSON out).

  POST /message/auth  {appId, appKey, timestamp (ms), sign}: result 10000 for an unknown app, a wrong
       appKey, a timestamp more than 10 minutes off (window UNCONFIRMED) or sign ≠ md5(appId + appKey
       + timestamp + appSecret); else {result: 0, desc, authToken}. Tokens live 1 day (SimConfig.auth_token_ttl_s
       overrides that; 0 makes them expire at once). No latency or faults here.
  Every other call needs header `authToken`: missing/unknown/expired → result 10000; a body appId
       that is not the token's app → 10094.
  POST /message/send {regId, title, content, …}, POST /message/saveListPayload {title, content, …}:
       message checks → 10050-ish parameter errors (title > 40 or content > 100 width, where a CJK
       character counts 2; clientCustomMap JSON > 1024 characters; timeToLive outside 900 s-7 days;
       classification not 0/1; missing requestId). /message/send then runs the injected faults
       (HTTP 503; HTTP 429 + Retry-After for throttle_rate and quota_per_s, vivo's own rate signal
       being UNCONFIRMED; result 10070 for daily_quota), then the regId: malformed (not 10-64 of
       [0-9A-Za-z]) or unregistered → result 10302; else {result: 0, desc, taskId}.
       saveListPayload stores the message → {result: 0, taskId}.
  POST /message/pushToList {appId, regIds (2-1000), taskId, requestId}: 10001-ish parameter errors,
       unknown taskId → 10300; faults as for send; bad regIds → invalidUsers [{status: 1, userId}];
       → {result: 0, desc, taskId, requestId, invalidUsers?}.
Replies are HTTP 200 except the 503s and 429s. Codes other than 0, 10070, 10252, 10254 are UNCONFIRMED.

Receipts (single sends only, as vivo; when SimConfig.receipt_url is set), about once a second, a
JSON POST keyed by taskId:
    {"<taskId>": {"param": "<extra.callback.param>", "targets": "regId", "ackTime": <ms>, "ackType": 1}}
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushpipe.connectors.http import json_object
from pushpipe.connectors.limits import width
from pushpipe.connectors.signing import md5_hex
from pushpipe.simulators.batchsim import (
    AuthTokens,
    BatchVendorSim,
    Encoded,
    Receipt,
    Reply,
    Request,
    Route,
    group_receipts,
    json_reply,
    too_many_requests,
    unavailable,
)

PREFIX = "/message/"
AUTH, SEND, SAVE_LIST, PUSH_LIST = (PREFIX + p for p in ("auth", "send", "saveListPayload", "pushToList"))
TOKEN_LIFETIME_S = 24 * 3600
TIMESTAMP_WINDOW_S = 600
LIST_MIN, LIST_MAX = 2, 1000
_REGID = re.compile(r"[0-9A-Za-z]{10,64}")


def answer(result: int, desc: str, fields: Mapping[str, Any] | None = None,
           receipts: tuple[Receipt, ...] = ()) -> Reply:
    return json_reply({"result": result, "desc": desc, **(fields or {})}, receipts=receipts)


def message_error(m: Mapping[str, Any]) -> Reply | None:
    """vivo's parameter checks on a message (send or saveListPayload)."""
    title, content = m.get("title"), m.get("content")
    if not isinstance(title, str) or not title or not isinstance(content, str) or not content:
        return answer(10052, "title and content are required")
    custom = m.get("clientCustomMap", {})
    problems = [(width(title) > 40, 10053, "title too long"),
                (width(content) > 100, 10055, "content too long"),
                (not isinstance(custom, dict) or len(json.dumps(custom, separators=(",", ":"),
                                                                ensure_ascii=False)) > 1024, 10060,
                 "clientCustomMap too long"),
                (not _ttl_ok(m.get("timeToLive", 86_400)), 10056, "timeToLive out of range"),
                (m.get("classification", 0) not in (0, 1), 10057, "classification must be 0 or 1"),
                (not m.get("requestId"), 10065, "requestId is required")]
    return next((answer(code, why) for bad, code, why in problems if bad), None)


def _ttl_ok(ttl: object) -> bool:
    return isinstance(ttl, int) and 900 <= ttl <= 7 * 86_400


class VivoSimulator(BatchVendorSim):
    name = "vivo"
    prefixes: tuple[str, ...] = (PREFIX,)
    auth_paths = frozenset({AUTH})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apps: dict[str, tuple[str, str]] = {}  # appId -> (appKey, appSecret)
        self.tokens = AuthTokens(self.state, TOKEN_LIFETIME_S, self._clock)
        self.lists: dict[str, tuple[str, dict[str, Any]]] = {}  # taskId -> (appId, message)

    @staticmethod
    def new_credentials() -> dict[str, str]:
        return {"app_id": str(10_000 + secrets.randbelow(90_000)), "app_key": secrets.token_hex(16),
                "app_secret": secrets.token_hex(16)}

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        self.apps[creds["app_id"]] = (creds["app_key"], creds["app_secret"])

    def targets(self, request: Request) -> list[str]:
        b = json_object(request.body)
        if request.path == SEND:
            return [str(b.get("regId", ""))]
        regids = b.get("regIds") if request.path == PUSH_LIST else None
        return [str(t) for t in regids] if isinstance(regids, list) else []

    def routes(self) -> Mapping[str, Route]:
        return {AUTH: self.auth, SEND: self.authed(self.send), SAVE_LIST: self.authed(self.save_list),
                PUSH_LIST: self.authed(self.push_list)}

    def auth(self, request: Request, now: float) -> Reply:
        b = json_object(request.body)
        app_id, timestamp = str(b.get("appId", "")), str(b.get("timestamp", ""))
        key, secret = self.apps.get(app_id, ("", ""))
        fresh = timestamp.isdigit() and abs(int(timestamp) / 1000 - now) <= TIMESTAMP_WINDOW_S
        expected = md5_hex(app_id + key + timestamp + secret)  # vivo's formula, restated server-side
        if not key or b.get("appKey") != key or not fresh or b.get("sign") != expected:
            return answer(10000, "权限认证失败")
        return answer(0, "请求成功", {"authToken": self.tokens.issue(app_id)})

    def authed(self, route: Route) -> Route:
        def checked(request: Request, now: float) -> Reply:
            app_id = self.tokens.check(request.headers.get("authtoken", ""))
            if app_id is None:
                return answer(10000, "权限认证失败")
            if str(json_object(request.body).get("appId", app_id)) != app_id:
                return answer(10094, "appId does not match the authToken")
            return route(request, now)
        return checked

    def send(self, request: Request, now: float) -> Reply:
        m = json_object(request.body)
        if error := message_error(m):
            return error
        if fault := self._fault(now, 1):
            return fault
        regid = str(m.get("regId", ""))
        accepted, _, _ = self.split([regid], lambda t: bool(_REGID.fullmatch(t)))
        task_id = str(secrets.randbelow(10**12))
        self.record(accepted, task_id, {k: v for k, v in m.items() if k != "regId"}, now)
        if not accepted:
            return answer(10302, "regId不存在")
        extra = m.get("extra") or {}
        receipt = Receipt(1, task_id, str(extra.get("callback.param", "")), (regid,), now, str(extra.get("callback", "")))
        return answer(0, "请求成功", {"taskId": task_id}, (receipt,))

    def save_list(self, request: Request, now: float) -> Reply:
        m = json_object(request.body)
        if error := message_error(m):
            return error
        task_id = str(secrets.randbelow(10**12))
        self.lists[task_id] = (str(m.get("appId", "")), m)
        return answer(0, "请求成功", {"taskId": task_id})

    def push_list(self, request: Request, now: float) -> Reply:
        b = json_object(request.body)
        regids, task_id = b.get("regIds"), str(b.get("taskId", ""))
        if not isinstance(regids, list) or not LIST_MIN <= len(regids) <= LIST_MAX or not b.get("requestId"):
            return answer(10001, f"regIds must hold {LIST_MIN}-{LIST_MAX} ids; requestId is required")
        if task_id not in self.lists:
            return answer(10300, "taskId不存在")
        if fault := self._fault(now, len(regids)):
            return fault
        regids = [str(r) for r in regids]
        accepted, _, _ = self.split(regids, lambda t: bool(_REGID.fullmatch(t)))
        self.record(accepted, task_id, self.lists[task_id][1], now)
        invalid = [{"status": 1, "userId": t} for t in regids if t not in set(accepted)]
        fields = {"taskId": task_id, "requestId": b["requestId"], **({"invalidUsers": invalid} if invalid else {})}
        return answer(0, "请求成功", fields)

    def _fault(self, now: float, tokens: int) -> Reply | None:
        fault = self.fault(now, tokens)
        if fault == "unavailable":
            return unavailable()
        if fault == "throttled":
            return too_many_requests(self.state.config.retry_after_s)
        return answer(10070, "发送总量超出限制") if fault == "daily" else None

    def encode_receipts(self, receipts: list[Receipt]) -> list[Encoded]:
        doc = {r.msg_id: {"param": r.param, "targets": ",".join(r.tokens), "ackTime": int(r.at * 1000),
                          "ackType": r.kind} for r in group_receipts(receipts).values()}
        return [(json.dumps(doc, ensure_ascii=False).encode(), "application/json")]


def create(state_dir: Path) -> VivoSimulator:
    """The simulator with its dev credentials (state_dir/vivo/credentials.json) registered."""
    return VivoSimulator.create(state_dir)
