"""Xiaomi MiPush simulator: `POST /v3/message/regid` (form), `Authorization: key=<AppSecret>`.

Checks, in order: outage (HTTP 503), AppSecret (21301 "Authentication failed"), parameters (10016
missing registration_id / restricted_package_name / title+description of a notification; 10017
unknown package, title ≥50, description ≥128, payload ≥4096 bytes, more than 10 extras, more than
1000 regids), then injected faults (HTTP 503; code 10023 for throttle_rate and quota_per_s; no daily
code is modeled, so daily_quota is ignored), then the regids: malformed (not 20-200 characters of
[A-Za-z0-9+/=]) or in unregistered_tokens are bad. All bad → 20301 "No valid targets!"; otherwise
code 0 with data {id, bad_regids?}. Every reply is HTTP 200 with {result, reason?, trace_id, code,
description, data?} except the 503s. See connectors.xiaomi for which codes are UNCONFIRMED.

Receipts (when SimConfig.receipt_url is set; the request's extra.callback.type bits select the kinds,
1 delivered for accepted regids and 16 invalid target for bad ones): about once a second, a
form-encoded POST with one field `data`, a JSON object keyed by message id:
    data={"<msg id>": {"param": "<extra.callback.param>", "type": 1, "targets": "regid1,regid2",
                       "jobkey": "", "barStatus": "Enable", "timestamp": <ms>}}
one POST per receipt type (a message id can appear once per JSON object). A device with notifications
off (SimConfig.switched_off_rate, simulators/population.py) gets its type 1 receipt with barStatus "Disable",
in a POST of its own.
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushpipe.connectors.signing import form_body, parse_form
from pushpipe.simulators.batchsim import (
    SWITCHED_OFF,
    BatchVendorSim,
    Encoded,
    Receipt,
    Reply,
    Request,
    Route,
    group_receipts,
    json_reply,
    new_id,
)

PATH = "/v3/message/regid"
MAX_REGIDS = 1000
_REGID = re.compile(r"[A-Za-z0-9+/=]{20,200}")
DELIVERED, INVALID_TARGET = 1, 16


def answer(code: int, description: str, data: Mapping[str, Any] | None = None,
           receipts: tuple[Receipt, ...] = ()) -> Reply:
    doc: dict[str, Any] = {"result": "ok" if code == 0 else "error", "trace_id": new_id("Xlm"), "code": code,
                           "description": description}
    if code:
        doc["reason"] = description
    if data is not None:
        doc["data"] = data
    return json_reply(doc, receipts=receipts)


def param_error(f: Mapping[str, str], package: str, regids: list[str]) -> Reply | None:
    """10016 / 10017 for a request Xiaomi would refuse outright."""
    if not regids or not f.get("restricted_package_name"):
        return answer(10016, "Missing required parameter")
    notification = f.get("pass_through", "0") == "0"
    if notification and not (f.get("title") and f.get("description")):
        return answer(10016, "title and description are required for notifications")
    problems = [(f["restricted_package_name"] != package, "Invalid package name"),
                (len(f.get("title", "")) >= 50, "title too long"),
                (len(f.get("description", "")) >= 128, "description too long"),
                (len(f.get("payload", "").encode()) >= 4096, "payload too long"),
                (sum(k.startswith("extra.") for k in f) > 10, "too many extras"),
                (len(regids) > MAX_REGIDS, f"more than {MAX_REGIDS} regids")]
    return next((answer(10017, why) for bad, why in problems if bad), None)


class XiaomiSimulator(BatchVendorSim):
    name = "xiaomi"
    prefixes: tuple[str, ...] = ("/v3/",)
    switched_off_receipts = True  # barStatus "Disable"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.apps: dict[str, str] = {}  # AppSecret -> package name

    @staticmethod
    def new_credentials() -> dict[str, str]:
        return {"app_secret": secrets.token_urlsafe(18), "package_name": "com.pushpipe.demo"}

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        self.apps[creds["app_secret"]] = creds["package_name"]

    def targets(self, request: Request) -> list[str]:
        return [t for t in parse_form(request.body).get("registration_id", "").split(",") if t]

    def routes(self) -> Mapping[str, Route]:
        return {PATH: self.send}

    def send(self, request: Request, now: float) -> Reply:
        scheme, _, secret = request.headers.get("authorization", "").partition("=")
        package = self.apps.get(secret) if scheme.strip().lower() == "key" else None
        if package is None:
            return answer(21301, "Authentication failed")
        form = parse_form(request.body)
        regids = [t for t in form.get("registration_id", "").split(",") if t]
        if error := param_error(form, package, regids):
            return error
        if fault := self.fault(now, len(regids), daily=False):
            return json_reply({"error": "ServiceUnavailable"}, 503) if fault == "unavailable" else \
                answer(10023, "Request frequency over the limit")
        return self.deliver(form, regids, now)

    def deliver(self, form: Mapping[str, str], regids: list[str], now: float) -> Reply:
        accepted, _, _ = self.split(regids, lambda t: bool(_REGID.fullmatch(t)))
        bad = [t for t in regids if t not in set(accepted)]
        msg_id = new_id("scm")
        self.record(accepted, msg_id, {k: v for k, v in form.items() if k != "registration_id"}, now)
        receipts = self.receipts_for(form, msg_id, accepted, bad, now)
        if not accepted:
            return answer(20301, "No valid targets!", receipts=receipts)
        data = {"id": msg_id, **({"bad_regids": ",".join(bad)} if bad else {})}
        return answer(0, "成功", data, receipts)

    @staticmethod
    def receipts_for(form: Mapping[str, str], msg_id: str, accepted: list[str], bad: list[str],
                     now: float) -> tuple[Receipt, ...]:
        kinds = int(form.get("extra.callback.type", "3") or 3)
        param = form.get("extra.callback.param", "")
        url = form.get("extra.callback", "")
        out = [Receipt(kind, msg_id, param, tuple(tokens), now, url)
               for kind, tokens in ((DELIVERED, accepted), (INVALID_TARGET, bad)) if kinds & kind and tokens]
        return tuple(out)

    def encode_receipts(self, receipts: list[Receipt]) -> list[Encoded]:
        by_kind: dict[int, dict[str, Any]] = {}
        for r in group_receipts(receipts).values():
            off = r.kind == SWITCHED_OFF
            by_kind.setdefault(r.kind, {})[r.msg_id] = {
                "param": r.param, "type": DELIVERED if off else r.kind, "targets": ",".join(r.tokens), "jobkey": "",
                "barStatus": "Disable" if off else "Enable", "timestamp": int(r.at * 1000)}
        return [(form_body({"data": json.dumps(doc, ensure_ascii=False)}), "application/x-www-form-urlencoded")
                for doc in by_kind.values()]


def create(state_dir: Path) -> XiaomiSimulator:
    """The simulator with its dev credentials (state_dir/xiaomi/credentials.json) registered."""
    return XiaomiSimulator.create(state_dir)
