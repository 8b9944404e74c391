"""Each vendor's receipt callback, read into vendor-neutral receipts (the formats: ../shared/VENDORS.md and
each simulator's docstring). A body that cannot be read at all raises BadCallback; an item that cannot is
a Problem beside the good items of the same body, which still count.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from pushpipe.schemas import keys


class Heard(NamedTuple):
    """One receipt as a callback or an SDK told it."""
    app_id: str
    msg_id: str
    token: str
    kind: str  # a ReceiptKind symbol
    code: str
    ts: int


class Problem(NamedTuple):
    item: str  # where in the body: "statuses[3]", "data.<msg>"
    reason: str


class BadCallback(ValueError):
    """The body is not this vendor's callback at all; the message says why."""


Parsed = tuple[list[Heard], list[Problem]]

# Huawei-style statuses (HMS, Honor): only 0 (delivered) is documented; any other is kept as undelivered.
HUAWEI_DELIVERED = 0
XIAOMI_KINDS = {1: "delivered", 2: "clicked", 16: "invalid_target"}
OPPO_KINDS = {"push_arrive": "delivered", "click": "clicked", "regid_invalid": "invalid_target",
              "user_daily_limit": "undelivered"}
VIVO_KINDS = {1: "delivered", 2: "clicked", 16: "invalid_target"}
MEIZU_KINDS = {1: "delivered", 2: "clicked", 3: "clicked"}  # 3: delivered and clicked


def parse(vendor: str, body: bytes, content_type: str, app_id: str) -> Parsed:
    """The receipts in one callback of `vendor` about `app_id` ("" when each receipt names its app)."""
    reader = READERS.get(vendor)
    if reader is None:
        raise BadCallback(f"no receipt callbacks from vendor {vendor!r} (have: {sorted(READERS)})")
    return reader(_document(body, content_type), app_id)


def _document(body: bytes, content_type: str) -> Any:
    """The JSON in the body, or the form fields of a form-encoded one (a field's JSON is read by the vendor)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadCallback("the body is not UTF-8") from None
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {name: values[-1] for name, values in parse_qs(text, keep_blank_values=True).items()}
    try:
        return json.loads(text)
    except ValueError as bad:
        raise BadCallback(f"the body is not JSON: {bad}") from None


def _huawei(doc: Any, app_id: str) -> Parsed:
    """{"statuses": [{biTag: "<app>|<msg>", appid, token, status, timestamp, requestId}]}"""
    statuses = doc.get("statuses") if isinstance(doc, dict) else None
    if not isinstance(statuses, list):
        raise BadCallback('expected {"statuses": [...]}')
    heard, problems = [], []
    for n, status in enumerate(statuses):
        try:
            app, msg = _bi_tag(status["biTag"], app_id)
            code = int(status["status"])
            kind = "delivered" if code == HUAWEI_DELIVERED else "undelivered"
            heard.append(Heard(app, msg, _token(status["token"]), kind, str(code), int(status["timestamp"])))
        except (KeyError, TypeError, ValueError) as bad:
            problems.append(Problem(f"statuses[{n}]", _why(bad)))
    return heard, problems


def _bi_tag(tag: Any, app_id: str) -> tuple[str, str]:
    """(app, msg) of a biTag set by connectors.hms / honor: "<app>|<msg>"."""
    app, sep, msg = str(tag).partition(keys.SEP)
    if not sep:
        raise ValueError(f"biTag {str(tag)[:80]!r} is not <app>|<msg>")
    if app_id and app != app_id:
        raise ValueError(f"biTag names app {app!r}, the URL {app_id!r}")
    keys.check_app_id(app)
    keys.check_msg_id(msg)
    return app, msg


def _xiaomi(doc: Any, app_id: str) -> Parsed:
    """form data={"<xiaomi msg id>": {param: <msg>, type: 1|2|16, targets: "regid1,regid2", barStatus, timestamp}}"""
    entries = _json_field(doc, "data")
    return _per_message(entries, app_id, lambda e: _kind(XIAOMI_KINDS, e["type"], e.get("barStatus")),
                        lambda e: str(e["targets"]).split(","), "timestamp")


def _vivo(doc: Any, app_id: str) -> Parsed:
    """{"<taskId>": {param: <msg>, targets: "regId1,regId2", ackTime, ackType}}"""
    if not isinstance(doc, dict):
        raise BadCallback("expected a JSON object keyed by taskId")
    return _per_message(doc, app_id, lambda e: _kind(VIVO_KINDS, e["ackType"]),
                        lambda e: str(e["targets"]).split(","), "ackTime")


def _meizu(doc: Any, app_id: str) -> Parsed:
    """form cb={"<msgId>-<type>": {param: <msg>, type: 1|2|3, targets: [pushId, ...]}}, access_token"""
    entries = _json_field(doc, "cb")
    return _per_message(entries, app_id, lambda e: _kind(MEIZU_KINDS, e["type"]), lambda e: list(e["targets"]), "")


def _oppo(doc: Any, app_id: str) -> Parsed:
    """[{messageId, appId, taskId, registrationIds: "a,b", eventTime: "<ms>", param: <msg>, eventType}]"""
    if not isinstance(doc, list):
        raise BadCallback("expected a JSON array of events")
    entries = {f"[{n}]": event for n, event in enumerate(doc)}
    return _per_message(entries, app_id, lambda e: _kind(OPPO_KINDS, e["eventType"]),
                        lambda e: str(e["registrationIds"]).split(","), "eventTime")


def _per_message(entries: Mapping[str, Any], app_id: str, kind_of: Callable[[Any], tuple[str, str]],
                 tokens_of: Callable[[Any], list[str]], ts_field: str) -> Parsed:
    """Receipts of vendors that report per message (its callback param, our msg id) the tokens of one kind."""
    if not app_id:
        raise BadCallback("this vendor's receipts name no app: post them to the URL the send carried")
    heard, problems = [], []
    for where, entry in entries.items():
        try:
            msg = str(entry["param"])
            keys.check_msg_id(msg)
            kind, code = kind_of(entry)
            ts = int(entry[ts_field]) if ts_field and entry.get(ts_field) else int(time.time() * 1000)
            targets = [t for t in tokens_of(entry) if t]
        except (KeyError, TypeError, ValueError) as bad:
            problems.append(Problem(where, _why(bad)))
            continue
        for target in targets:  # a bad token is a problem of its own: the entry's other tokens still count
            try:
                heard.append(Heard(app_id, msg, _token(target), kind, code, ts))
            except ValueError as bad:
                problems.append(Problem(f"{where}.targets", _why(bad)))
    return heard, problems


def _kind(kinds: Mapping[Any, str], value: Any, bar_status: Any = None) -> tuple[str, str]:
    """(ReceiptKind, code) of a vendor's receipt type; a delivery to a device whose notifications are off is
    switched_off (Xiaomi's barStatus "Disable")."""
    key = value if isinstance(next(iter(kinds)), str) else int(value)
    if key not in kinds:
        raise ValueError(f"unknown receipt type {value!r} (known: {sorted(kinds)})")
    kind = kinds[key]
    if kind == "delivered" and bar_status == "Disable":
        kind = "switched_off"
    return kind, str(value)


def _json_field(doc: Any, name: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or name not in doc:
        raise BadCallback(f"expected a form field {name!r}")
    try:
        entries = json.loads(doc[name])
    except ValueError as bad:
        raise BadCallback(f"form field {name!r} is not JSON: {bad}") from None
    if not isinstance(entries, dict):
        raise BadCallback(f"form field {name!r} is not a JSON object")
    return entries


def _token(token: Any) -> str:
    keys.check_token(str(token))
    return str(token)


def _why(bad: Exception) -> str:
    return f"missing field {bad}" if isinstance(bad, KeyError) else str(bad)


READERS: dict[str, Callable[[Any, str], Parsed]] = {
    "hms": _huawei, "honor": _huawei, "xiaomi": _xiaomi, "oppo": _oppo, "vivo": _vivo, "meizu": _meizu,
}


def sdk_events(body: bytes, app_id: str) -> Parsed:
    """An SDK's batched upload: {"events": [{msg_id, token, kind: delivered|opened|clicked|dismissed, ts}]}.
    APNs has no receipts: an iOS Notification Service Extension posts "delivered" this way."""
    doc = _document(body, "application/json")
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise BadCallback('expected {"events": [...]}')
    heard, problems = [], []
    for n, event in enumerate(events):
        try:
            kind = str(event["kind"])
            if kind not in SDK_KINDS:
                raise ValueError(f"kind {kind[:40]!r} is not one of {SDK_KINDS}")
            keys.check_msg_id(str(event["msg_id"]))
            heard.append(Heard(app_id, str(event["msg_id"]), _token(event["token"]), kind, kind, int(event["ts"])))
        except (KeyError, TypeError, ValueError) as bad:
            problems.append(Problem(f"events[{n}]", _why(bad)))
    return heard, problems


SDK_KINDS = ("delivered", "opened", "clicked", "dismissed")
