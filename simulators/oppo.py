"""OPPO PUSH simulator: auth, save_message_content and broadcast under `/server/v1/` (forms, JSON replies).

  POST /server/v1/auth  {app_key, timestamp (ms), sign}: 14 unknown app_key, 19 timestamp more than
       10 minutes off (window UNCONFIRMED), 16 sign ≠ sha256(app_key + timestamp + master_secret);
       else data {auth_token, create_time}. Tokens live 24 h (SimConfig.auth_token_ttl_s overrides
       that; 0 makes them expire at once). No latency or faults on this endpoint.
  POST /server/v1/message/notification/save_message_content  {auth_token, title, content, …}: 11 bad or
       expired auth_token (form field or `auth_token` header), 40 missing title/content, 41 title > 50
       or content > 200 characters; else data {message_id}.
  POST /server/v1/message/notification/broadcast  {auth_token, message_id, target_type=2, target_value}:
       11 bad token, 31 unknown message_id, 41 target_type ≠ 2 or not 1-1000 regids (";" separated);
       then injected faults: HTTP 503, code -2 "Service in Flow Control" (throttle_rate, quota_per_s),
       code 33 daily limit (daily_quota); then the regids: malformed (not 10-100 of [A-Za-z0-9_-]) or
       unregistered ones are listed under data["10000"]; data also has message_id and task_id.
Replies are HTTP 200 {code, message, data} except the 503s (outage, unavailable_rate).

Receipts (when SimConfig.receipt_url is set), about once a second: a JSON array POST, one element per
message and event, eventType "push_arrive" (accepted) or "regid_invalid" (bad regids):
    [{"messageId": "<message_id>", "appId": "<app_key>", "taskId": "<task_id>",
      "registrationIds": "regid1,regid2", "eventTime": "<ms>", "param": "<call_back_parameter>",
      "eventType": "push_arrive"}]
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushpipe.connectors.signing import parse_form, sha256_hex
from pushpipe.simulators.batchsim import AuthTokens, BatchVendorSim, Encoded, Receipt, Reply, Request, Route, json_reply, unavailable

PREFIX = "/server/v1/"
AUTH = PREFIX + "auth"
SAVE = PREFIX + "message/notification/save_message_content"
BROADCAST = PREFIX + "message/notification/broadcast"
TOKEN_LIFETIME_S = 24 * 3600
TIMESTAMP_WINDOW_S = 600
MAX_TARGETS = 1000
_REGID = re.compile(r"[A-Za-z0-9_-]{10,100}")
EVENT_TYPES = {1: "push_arrive", 16: "regid_invalid"}


@dataclass(frozen=True)
class Saved:
    app_key: str
    fields: dict[str, str]


def answer(code: int, message: str, data: Mapping[str, Any] | None = None,
           receipts: tuple[Receipt, ...] = ()) -> Reply:
    return json_reply({"code": code, "message": message, **({"data": data} if data is not None else {})},
                      receipts=receipts)


def content_error(f: Mapping[str, str]) -> Reply | None:
    if not f.get("title") or not f.get("content"):
        return answer(40, "Missing Required Arguments: title, content")
    if len(f["title"]) > 50 or len(f["content"]) > 200:
        return answer(41, "Invalid Arguments: title over 50 or content over 200 characters")
    return None


class OppoSimulator(BatchVendorSim):
    name = "oppo"
    prefixes: tuple[str, ...] = (PREFIX,)
    auth_paths = frozenset({AUTH})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apps: dict[str, str] = {}  # app_key -> master_secret
        self.tokens = AuthTokens(self.state, TOKEN_LIFETIME_S, self._clock)
        self.saved: dict[str, Saved] = {}  # message_id -> saved content

    @staticmethod
    def new_credentials() -> dict[str, str]:
        return {"app_key": secrets.token_hex(16), "master_secret": secrets.token_hex(16)}

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        self.apps[creds["app_key"]] = creds["master_secret"]

    def targets(self, request: Request) -> list[str]:
        if request.path != BROADCAST:
            return []
        return [t for t in parse_form(request.body).get("target_value", "").split(";") if t]

    def routes(self) -> Mapping[str, Route]:
        return {AUTH: self.auth, SAVE: self.save, BROADCAST: self.broadcast}

    def auth(self, request: Request, now: float) -> Reply:
        f = parse_form(request.body)
        app_key, timestamp = f.get("app_key", ""), f.get("timestamp", "")
        if app_key not in self.apps:
            return answer(14, "Invalid App Key")
        if not timestamp.isdigit() or abs(int(timestamp) / 1000 - now) > TIMESTAMP_WINDOW_S:
            return answer(19, "Invalid Timestamp")
        if f.get("sign") != sha256_hex(app_key + timestamp + self.apps[app_key]):  # OPPO's formula, restated
            return answer(16, "Invalid Signature")
        return answer(0, "success", {"auth_token": self.tokens.issue(app_key), "create_time": int(now * 1000)})

    def _app(self, request: Request, form: Mapping[str, str]) -> str | None:
        return self.tokens.check(form.get("auth_token") or request.headers.get("auth_token", ""))

    def save(self, request: Request, now: float) -> Reply:
        f = parse_form(request.body)
        app_key = self._app(request, f)
        if app_key is None:
            return answer(11, "Invalid AuthToken")
        if error := content_error(f):
            return error
        message_id = secrets.token_hex(12)
        self.saved[message_id] = Saved(app_key, {k: v for k, v in f.items() if k != "auth_token"})
        return answer(0, "success", {"message_id": message_id})

    def broadcast(self, request: Request, now: float) -> Reply:
        f = parse_form(request.body)
        app_key = self._app(request, f)
        if app_key is None:
            return answer(11, "Invalid AuthToken")
        saved = self.saved.get(f.get("message_id", ""))
        if saved is None or saved.app_key != app_key:
            return answer(31, "Data Not Exist: message_id")
        targets = [t for t in f.get("target_value", "").split(";") if t]
        if f.get("target_type") != "2" or not 1 <= len(targets) <= MAX_TARGETS:
            return answer(41, f"Invalid Arguments: target_type 2 with 1-{MAX_TARGETS} registration ids")
        fault = self.fault(now, len(targets))
        if fault == "unavailable":
            return unavailable()
        if fault:
            return answer(-2, "Service in Flow Control") if fault == "throttled" else \
                answer(33, "The number of messages exceeds the daily limit")
        return self.deliver(f["message_id"], saved, targets, now)

    def deliver(self, message_id: str, saved: Saved, targets: list[str], now: float) -> Reply:
        accepted, _, _ = self.split(targets, lambda t: bool(_REGID.fullmatch(t)))
        bad = [t for t in targets if t not in set(accepted)]
        task_id = secrets.token_hex(12)
        self.record(accepted, task_id, saved.fields, now)
        param = saved.fields.get("call_back_parameter", "")
        url = saved.fields.get("call_back_url", "")
        receipts = tuple(Receipt(kind, f"{message_id}/{task_id}/{saved.app_key}", param, tuple(tokens), now, url)
                         for kind, tokens in ((1, accepted), (16, bad)) if tokens)
        data: dict[str, Any] = {"message_id": message_id, "task_id": task_id}
        if bad:
            data["10000"] = bad
        return answer(0, "success", data, receipts)

    def encode_receipts(self, receipts: list[Receipt]) -> list[Encoded]:
        events = []
        for r in receipts:
            message_id, task_id, app_key = r.msg_id.split("/")
            events.append({"messageId": message_id, "appId": app_key, "taskId": task_id,
                           "registrationIds": ",".join(r.tokens), "eventTime": str(int(r.at * 1000)),
                           "param": r.param, "eventType": EVENT_TYPES[r.kind]})
        return [(json.dumps(events, ensure_ascii=False).encode(), "application/json")]


def create(state_dir: Path) -> OppoSimulator:
    """The simulator with its dev credentials (state_dir/oppo/credentials.json) registered."""
    return OppoSimulator.create(state_dir)
