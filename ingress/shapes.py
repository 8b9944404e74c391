"""The API's JSON bodies into the pipeline's records, each bad field named: Invalid({"pins[2]": "is empty", ...}).

A push is checked for its JSON shape here (types, enums, sizes, unknown fields, every pin and token by the id rules
of schemas/keys.py), then by fan-out's own rules (jobs/fanout/validate.py: the target and its pins or tokens, the
recurrence, deliver_at within the TTL, a notification with something in it), so what the API takes fan-out takes.
The app comes from the path and its environment from the registry, never from the body.
"""
from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

from pushpipe.ingress.apps import VENDORS
from pushpipe.jobs.fanout import validate
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import App

Record = dict[str, Any]
Check = Callable[[Any], str | None]  # a value -> what is wrong with it, or None
MAX_TTL_S = 28 * 86400
MAX_TEXT_BYTES = 4096
HH_MM = re.compile(r"([01]\d|2[0-3]):[0-5]\d\Z")


class Invalid(ValueError):
    """Bad fields, each named (dotted, with [i] for list items) with what is wrong."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in fields.items()))
        self.fields = fields


# --- checks ----------------------------------------------------------------------------------------------------

def text(max_bytes: int = MAX_TEXT_BYTES, optional: bool = False, empty: bool = True) -> Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            return "must be a string" + (" or null" if optional else "")
        if not empty and not value.strip():
            return "must not be empty"
        return f"is {len(value.encode())} bytes, at most {max_bytes}" if len(value.encode()) > max_bytes else None
    return check


def integer(low: int, high: int, optional: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer" + (" or null" if optional else "")
        return f"must be between {low} and {high}" if not low <= value <= high else None
    return check


def choice(options: tuple[str, ...]) -> Check:
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"


def strings(max_items: int, item_bytes: int = 256) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of strings"
        if len(value) > max_items:
            return f"has {len(value)} items, at most {max_items}"
        long = next((i for i, v in enumerate(value) if len(v.encode()) > item_bytes), None)
        return f"item {long} is over {item_bytes} bytes" if long is not None else None
    return check


def string_map(max_items: int = 100) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return "must be an object of strings"
        return f"has {len(value)} keys, at most {max_items}" if len(value) > max_items else None
    return check


def time_zone(optional: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            return "must be an IANA time zone name, e.g. Europe/Berlin"
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"{value[:64]!r} is not an IANA time zone, e.g. Europe/Berlin"
        return None
    return check


def id_rule(rule: Callable[[str], None]) -> Check:
    """A keys.check_* rule as a check (its reason names what is wrong)."""
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        try:
            rule(value)
        except keys.InvalidId as bad:
            return str(bad)
        return None
    return check


def checked(doc: Any, checks: Mapping[str, Check], required: tuple[str, ...], where: str = "") -> dict[str, str]:
    """What is wrong with a JSON object's fields: unknown ones, missing ones, bad values."""
    if not isinstance(doc, dict):
        return {where.rstrip(".") or "body": "must be a JSON object"}
    problems = {f"{where}{name}": "is not a field of this body" for name in doc if name not in checks}
    problems |= {f"{where}{name}": "is required" for name in required if name not in doc}
    for name, value in doc.items():
        why = checks[name](value) if name in checks else None
        if why:
            problems[f"{where}{name}"] = why
    return problems


def each(values: list[str], rule: Callable[[str], None], field: str) -> dict[str, str]:
    problems = {}
    for i, value in enumerate(values):
        try:
            rule(value)
        except keys.InvalidId as bad:
            problems[f"{field}[{i}]"] = str(bad)
    return problems


# --- pushes ----------------------------------------------------------------------------------------------------

NOTIFICATION = {"title": text(), "body": text(), "data": string_map(), "sound": text(64, optional=True),
                "badge": integer(0, 1_000_000, optional=True), "collapse_id": text(64, optional=True),
                "template_id": text(128, optional=True), "template_vars": string_map()}
PUSH = {"msg_id": id_rule(keys.check_msg_id), "target": choice(("pin", "pins", "tokens", "broadcast", "segment")),
        "pins": strings(keys.MAX_PINS, keys.MAX_PIN_BYTES), "tokens": strings(keys.MAX_TOKENS, keys.MAX_TOKEN_BYTES),
        "segment": string_map(len(validate.SEGMENT_KEYS)), "notification": lambda value: None,  # its fields are checked below
        "priority": choice(("high", "normal", "low")), "category": text(64, empty=False), "ttl_s": integer(1, MAX_TTL_S),
        "deliver_at": integer(0, 2**62, optional=True), "campaign": text(128, optional=True), "recurrence": text(128, optional=True),
        "recurrence_tz": time_zone(), "recurrence_until": integer(0, 2**62)}
# fan-out's reasons, by what they start with or hold, to the field they are about
REASON_FIELDS = (("target 'segment'", "segment"), ("target 'tokens'", "tokens"), ("target 'pin", "pins"), ("recurrence", "recurrence"),
                 ("deliver_at", "deliver_at"), ("notification", "notification"), ("msg_id", "msg_id"), ("app_id", "app"),
                 ("a pin", "pins"), ("a token", "tokens"), (" pins", "pins"), (" tokens", "tokens"))


def push_request(doc: Any, app: App, now_ms: int, header_id: str = "", default_id: str = "", where: str = "") -> Record:
    """The PushRequest of one JSON push. Its msg id: the body's msg_id or `header_id` (the Idempotency-Key; when both
    are given they must agree), else `default_id`, else a new one."""
    problems = checked(doc, PUSH, ("target", "notification"), where)
    if problems:
        raise Invalid(problems)
    problems = checked(doc["notification"], NOTIFICATION, (), f"{where}notification.")
    if doc.get("msg_id") not in (None, header_id) and header_id:
        problems[f"{where}msg_id"] = "differs from the Idempotency-Key header: send one or make them equal"
    if problems:  # with every bad pin and token too (a good request has them checked once, by fan-out's rules below)
        raise Invalid(problems | bad_ids(doc.get("pins", []), doc.get("tokens", []), where))
    fields = {k: v for k, v in doc.items() if k not in ("notification", "msg_id")}
    record = codec.new_record("PushRequest", **fields, msg_id=doc.get("msg_id") or header_id or default_id or new_msg_id(), app_id=app.app_id,
                              environment=app.environment, created_at=now_ms,
                              notification=codec.new_record("Notification", **doc["notification"]))
    try:
        validate.validate(record)  # the id rules of every pin and token too: on the way in, each is checked once
    except validate.InvalidRequest as bad:
        ids = bad_ids(record["pins"], record["tokens"], where)  # which pin or token, by its place
        raise Invalid(ids or {where + next((field for needle, field in REASON_FIELDS if needle in str(bad)), "body"): str(bad)}) from None
    return validate.without_repeats(record)


def bad_ids(pins: list[str], tokens: list[str], where: str) -> dict[str, str]:
    return (each(pins, lambda pin: keys.check_pin(pin, "pin"), f"{where}pins")
            | each(tokens, lambda token: keys.check_token(token, "token"), f"{where}tokens"))


def push_batch(doc: Any, app: App, idempotency_key: str, now_ms: int, max_batch: int) -> list[Record]:
    """The PushRequests of {"messages": [...]}: all of them, or Invalid naming each bad field as messages[i].<field>.
    With an Idempotency-Key K, message i without a msg_id of its own gets "K-i"."""
    problems = checked(doc, {"messages": lambda value: None}, ("messages",))
    messages = doc.get("messages") if not problems else None
    if not problems and (not isinstance(messages, list) or not 1 <= len(messages) <= max_batch):
        problems["messages"] = f"must be a list of 1 to {max_batch} pushes"
    if problems:
        raise Invalid(problems)
    assert isinstance(messages, list)
    records: list[Record] = []
    for i, message in enumerate(messages):
        try:
            default_id = f"{idempotency_key}-{i}" if idempotency_key else ""
            records.append(push_request(message, app, now_ms, default_id=default_id, where=f"messages[{i}]."))
        except Invalid as bad:
            problems |= bad.fields
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        if record["msg_id"] in seen and not problems:
            problems[f"messages[{i}].msg_id"] = f"is the msg_id of messages[{seen[record['msg_id']]}] too"
        seen.setdefault(record["msg_id"], i)
    if problems:
        raise Invalid(problems)
    return records


def new_msg_id() -> str:
    """128 random bits from the OS, as hex: what uuid4().hex gives less its version bits, in 0.5 µs where 2.3."""
    return os.urandom(16).hex()


# --- devices and preferences -----------------------------------------------------------------------------------

DEVICE_KINDS = ("bind", "report", "unbind", "deregister")
DEVICE = {"token": id_rule(keys.check_token), "vendor": choice(VENDORS), "pin": id_rule(keys.check_pin),
          "platform": choice(("ios", "android", "harmony")), "brand": text(64), "model": text(64), "os_version": text(32),
          "app_version": text(32), "locale": text(35), "timezone": time_zone(), "tags": strings(50, 64),
          "fallback_token": id_rule(keys.check_token), "previous_token": id_rule(keys.check_token)}
DEVICE_FIELDS = {"bind": tuple(DEVICE), "report": tuple(DEVICE), "unbind": ("token", "vendor", "pin"), "deregister": ("token", "vendor")}


def device_event(doc: Any, app: App, kind: str, now_ms: int) -> Record:
    """The DeviceEvent of a bind, report (a token refresh: previous_token), unbind or deregister."""
    problems = checked(doc, {name: DEVICE[name] for name in DEVICE_FIELDS[kind]}, ("token", "vendor"))
    if not problems and not app.allows(doc["vendor"]):
        problems["vendor"] = f"app {app.app_id} may use {', '.join(app.vendors)} only"
    if problems:
        raise Invalid(problems)
    platform = doc.get("platform") or {"apns": "ios"}.get(doc["vendor"], "android")
    return codec.new_record("DeviceEvent", **doc, app_id=app.app_id, kind=kind, environment=app.environment, platform=platform,
                            ts=now_ms)


PREFERENCE_KINDS = ("opt_out", "opt_in", "unsubscribe", "resubscribe", "set_timezone", "set_quiet_hours")
PREFERENCE = {"pin": id_rule(keys.check_pin), "kind": choice(PREFERENCE_KINDS), "category": text(64, optional=True),
              "channel": choice((*VENDORS, "push")), "timezone": time_zone(), "quiet_start": text(5), "quiet_end": text(5)}
PREFERENCE_NEEDS = {"set_timezone": ("timezone",), "set_quiet_hours": ("quiet_start", "quiet_end")}


def preference_event(doc: Any, app: App, now_ms: int) -> Record:
    """The PreferenceEvent of an opt-out or in (of a category, or a channel: a vendor or all push), an unsubscribe or
    resubscribe, a time zone or quiet hours ("HH:MM", in the user's time zone)."""
    problems = checked(doc, PREFERENCE, ("pin", "kind"))
    if not problems:
        problems |= {name: f"is required for {doc['kind']}" for name in PREFERENCE_NEEDS.get(doc["kind"], ()) if name not in doc}
        problems |= {name: "must be HH:MM, 00:00 to 23:59" for name in ("quiet_start", "quiet_end")
                     if name in doc and not HH_MM.match(doc[name])}
    if problems:
        raise Invalid(problems)
    return codec.new_record("PreferenceEvent", **doc, app_id=app.app_id, ts=now_ms)
