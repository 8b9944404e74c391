"""Meizu push simulator: `POST /garcia/api/server/push/varnished/pushByPushId` (signed form, JSON reply).

Checks, in order: outage (HTTP 503), appId (code "110000"), sign = md5 of the other fields as sorted
"k=v" + appSecret (code "1006"), parameters (code "1005": messageJson not JSON, title not 1-32 or
content not 1-100 characters, not 1-100 pushIds), then injected faults (HTTP 503; code "110010"
"app pushes too fast" for throttle_rate and quota_per_s; code "110019" daily cap for daily_quota),
then the pushIds: malformed (not 10-64 of [0-9A-Za-z]) → "110003", unregistered_tokens → "110002",
switched_off_tokens and the devices the population has switched off (SimConfig.switched_off_rate,
simulators/population.py) → "110005" (notification switch off). Replies are HTTP 200
{code, message, value, redirect, msgId} with value = {per-target code: [pushIds]} ({} when all
were accepted), except the 503s.

Receipts (when SimConfig.receipt_url is set), about once a second, a form POST with fields
`cb` (JSON keyed by "<msgId>-<type>") and `access_token` (the receipt endpoint's token; "" here):
    cb={"<msgId>-1": {"param": "<extra callback.param>", "type": 1, "targets": ["pushId1", "pushId2"]}}
Type 1 (delivered) is sent for accepted pushIds that reached their device (simulators/population.py);
clicks (2) are not simulated.
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushpipe.connectors.http import json_object
from pushpipe.connectors.signing import form_body, md5_hex, parse_form, sorted_params
from pushpipe.simulators import population
from pushpipe.simulators.batchsim import BatchVendorSim, Encoded, Receipt, Reply, Request, Route, group_receipts, json_reply, new_id, unavailable

PATH = "/garcia/api/server/push/varnished/pushByPushId"
MAX_PUSH_IDS = 100
_PUSH_ID = re.compile(r"[0-9A-Za-z]{10,64}")


def answer(code: str, message: str = "", value: Any = "", msg_id: str = "",
           receipts: tuple[Receipt, ...] = ()) -> Reply:
    doc = {"code": code, "message": message, "value": value, "redirect": ""}
    return json_reply({**doc, "msgId": msg_id} if msg_id else doc, receipts=receipts)


def message_error(message_json: str, push_ids: list[str]) -> Reply | None:
    bar = json_object(message_json.encode()).get("noticeBarInfo")
    title = bar.get("title", "") if isinstance(bar, dict) else ""
    content = bar.get("content", "") if isinstance(bar, dict) else ""
    if not isinstance(title, str) or not 1 <= len(title) <= 32:
        return answer("1005", "noticeBarInfo.title must be 1-32 characters")
    if not isinstance(content, str) or not 1 <= len(content) <= 100:
        return answer("1005", "noticeBarInfo.content must be 1-100 characters")
    if not 1 <= len(push_ids) <= MAX_PUSH_IDS:
        return answer("1005", f"pushIds must hold 1-{MAX_PUSH_IDS} ids")
    return None


class MeizuSimulator(BatchVendorSim):
    name = "meizu"
    prefixes: tuple[str, ...] = ("/garcia/",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apps: dict[str, str] = {}  # appId -> appSecret

    @staticmethod
    def new_credentials() -> dict[str, str]:
        return {"app_id": str(100_000 + secrets.randbelow(900_000)), "app_secret": secrets.token_hex(16)}

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        self.apps[creds["app_id"]] = creds["app_secret"]

    def targets(self, request: Request) -> list[str]:
        return [t for t in parse_form(request.body).get("pushIds", "").split(",") if t]

    def routes(self) -> Mapping[str, Route]:
        return {PATH: self.push}

    def push(self, request: Request, now: float) -> Reply:
        f = parse_form(request.body)
        secret = self.apps.get(f.get("appId", ""))
        if secret is None:
            return answer("110000", "appId不合法")
        unsigned = {k: v for k, v in f.items() if k != "sign"}
        if f.get("sign") != md5_hex(sorted_params(unsigned) + secret):  # Meizu's formula, restated
            return answer("1006", "签名认证失败")
        push_ids = [t for t in f.get("pushIds", "").split(",") if t]
        if error := message_error(f.get("messageJson", ""), push_ids):
            return error
        fault = self.fault(now, len(push_ids))
        if fault == "unavailable":
            return unavailable()
        if fault:
            throttled = fault == "throttled"
            return answer("110010", "应用请求频率超过限制") if throttled else answer("110019", "超过每日推送上限")
        return self.deliver(json_object(f["messageJson"].encode()), push_ids, now)

    def deliver(self, message: dict[str, Any], push_ids: list[str], now: float) -> Reply:
        accepted, dead, malformed = self.split(push_ids, lambda t: bool(_PUSH_ID.fullmatch(t)))
        config = self.state.config
        off = [t for t in accepted if t in config.switched_off_tokens or population.switched_off(config, t)]
        accepted = [t for t in accepted if t not in set(off)]
        value = {code: ids for code, ids in (("110002", dead), ("110003", malformed), ("110005", off)) if ids}
        msg_id = new_id("NS")
        self.record(accepted, msg_id, message, now)
        extra = message.get("extra") or {}
        receipt = Receipt(1, msg_id, str(extra.get("callback.param", "")), tuple(accepted), now, str(extra.get("callback", "")))
        receipts = (receipt,) if accepted else ()
        return answer("200", "", value, msg_id, receipts)

    def encode_receipts(self, receipts: list[Receipt]) -> list[Encoded]:
        cb = {f"{r.msg_id}-{r.kind}": {"param": r.param, "type": r.kind, "targets": list(r.tokens)}
              for r in group_receipts(receipts).values()}
        return [(form_body({"cb": json.dumps(cb, ensure_ascii=False), "access_token": ""}),
                 "application/x-www-form-urlencoded")]


def create(state_dir: Path) -> MeizuSimulator:
    """The simulator with its dev credentials (state_dir/meizu/credentials.json) registered."""
    return MeizuSimulator.create(state_dir)
