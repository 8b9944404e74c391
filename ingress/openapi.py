"""The API's OpenAPI 3.1 document, served at /openapi.json.

Written here rather than generated: the bodies are checked by ingress/shapes.py, and the schemas below name the
same fields (tests/test_ingress.py holds them equal), with the limits and enums the checks apply.
"""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings
from pushpipe.ingress import shapes
from pushpipe.ingress.apps import VENDORS
from pushpipe.jobs.fanout.validate import SEGMENT_KEYS
from pushpipe.schemas import keys

Schema = dict[str, Any]


def _text(max_bytes: int = shapes.MAX_TEXT_BYTES, nullable: bool = False, **more: Any) -> Schema:
    return {"type": ["string", "null"] if nullable else "string", "maxLength": max_bytes, **more}


def _strings(max_items: int, **more: Any) -> Schema:
    return {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": max_items, **more}


STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
NOTIFICATION: Schema = {"type": "object", "additionalProperties": False, "properties": {
    "title": _text(), "body": _text(), "data": {**STRING_MAP, "description": "custom key/values delivered to the app"},
    "sound": _text(64, True), "badge": {"type": ["integer", "null"], "minimum": 0},
    "collapse_id": _text(64, True, description="a newer message with the same id replaces the older one"),
    "template_id": _text(128, True), "template_vars": STRING_MAP},
    "description": "what the user sees: at least one of title, body, data or template_id"}
PUSH: Schema = {"type": "object", "additionalProperties": False, "required": ["target", "notification"], "properties": {
    "msg_id": _text(keys.MAX_MSG_ID_BYTES, description="the message's id (default: the Idempotency-Key header, else a new one); no '|'"),
    "target": {"enum": ["pin", "pins", "tokens", "broadcast", "segment"]},
    "pins": _strings(keys.MAX_PINS, description="user ids, for target pin (exactly one) or pins"),
    "tokens": _strings(keys.MAX_TOKENS, description="device tokens, for target tokens"),
    "segment": {**STRING_MAP, "propertyNames": {"enum": list(SEGMENT_KEYS)}, "description": "filters, for target segment"},
    "notification": NOTIFICATION,
    "priority": {"enum": ["high", "normal", "low"], "default": "normal"},
    "category": _text(64, default="transactional", description="transactional, marketing, ...: drives preferences and caps"),
    "ttl_s": {"type": "integer", "minimum": 1, "maximum": shapes.MAX_TTL_S, "default": 86400},
    "deliver_at": {"type": ["integer", "null"], "description": "epoch milliseconds: hold until then (within the TTL)"},
    "campaign": _text(128, True), "recurrence": _text(128, True, description="cron (min hour dom month dow): send again at each"),
    "recurrence_tz": _text(64, default="UTC", description="IANA time zone of the cron expression"),
    "recurrence_until": {"type": "integer", "minimum": 0, "description": "epoch milliseconds; 0: no end"}}}
DEVICE: Schema = {"type": "object", "additionalProperties": False, "required": ["token", "vendor"], "properties": {
    "token": _text(keys.MAX_TOKEN_BYTES), "vendor": {"enum": list(VENDORS)}, "pin": _text(keys.MAX_PIN_BYTES, description="the user"),
    "platform": {"enum": ["ios", "android", "harmony"]}, "brand": _text(64), "model": _text(64), "os_version": _text(32),
    "app_version": _text(32), "locale": _text(35), "timezone": _text(64, description="IANA time zone"),
    "tags": _strings(50, description="segments, e.g. vip, beta"), "fallback_token": _text(keys.MAX_TOKEN_BYTES, description="Umeng"),
    "previous_token": _text(keys.MAX_TOKEN_BYTES, description="report: the token this one replaces")}}
PREFERENCE: Schema = {"type": "object", "additionalProperties": False, "required": ["pin", "kind"], "properties": {
    "pin": _text(keys.MAX_PIN_BYTES), "kind": {"enum": list(shapes.PREFERENCE_KINDS)},
    "category": _text(64, True, description="opt_out/opt_in of one category (else of the channel)"),
    "channel": {"enum": [*VENDORS, "push"], "description": "opt_out/opt_in of one vendor, or push: every channel"},
    "timezone": _text(64, description="set_timezone: IANA time zone"),
    "quiet_start": _text(5, pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$", description="set_quiet_hours: HH:MM in the user's time zone"),
    "quiet_end": _text(5, pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")}}
ERROR: Schema = {"type": "object", "required": ["error", "reason"], "properties": {
    "error": {"type": "string", "description": "invalid, unauthenticated, forbidden, not_found, too_large, rate_limited, "
                                               "too_many_attempts, unavailable, internal"},
    "reason": {"type": "string"}, "fields": {**STRING_MAP, "description": "400: each bad field (e.g. messages[3].pins[0]) and why"}}}
MESSAGE: Schema = {"type": "object", "properties": {
    "msg_id": {"type": "string"}, "state": {"enum": ["opened", "delivered", "accepted", "retrying", "not_sent"],
                                            "description": "the furthest state any of its devices reached"},
    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
               "description": "devices per outcome (accepted, suppressed, invalid_token, ...) and receipt (delivered, opened, ...)"},
    "final": {"type": "boolean", "description": "no device is waiting for a retry"}, "vendors": _strings(20),
    "category": {"type": ["string", "null"]}, "priority": {"type": ["string", "null"]}, "campaign": {"type": ["string", "null"]},
    "requested_at": {"type": ["integer", "null"]}, "last_completed_at": {"type": ["integer", "null"]}}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    said = {400: "bad JSON or fields, each named; nothing queued", 401: "missing or wrong credentials",
            403: "the path's app is not the caller's", 404: "no such message of this app (or not counted yet)",
            413: "the body is too large", 429: "over the app's rate: see Retry-After",
            503: "Kafka (or Elasticsearch) did not answer: send again with the same Idempotency-Key"}
    return {str(code): {"description": said[code], **_json(_ref("Error"))} for code in codes}


def _send(summary: str, body: Schema, answer: Schema, *extra: int) -> dict[str, Any]:
    return {"post": {"summary": summary, "security": [{"app": [], "secret": []}], "requestBody": {"required": True, **_json(body)},
                     "parameters": [{"$ref": "#/components/parameters/app"}, *([{"$ref": "#/components/parameters/idempotency"}]
                                                                               if answer is ACCEPTED_PUSHES else [])],
                     "responses": {"202": {"description": "acknowledged by Kafka", **_json(answer)},
                                   **_errors(400, 401, 403, 413, *extra, 503)}}}


ACCEPTED_PUSHES: Schema = {"type": "object", "properties": {"msg_ids": _strings(10_000)}}
ACCEPTED_EVENT: Schema = {"type": "object", "properties": {"accepted": {"type": "string"}}}


def document(settings: Settings) -> dict[str, Any]:
    batch = {"type": "object", "additionalProperties": False, "required": ["messages"],
             "properties": {"messages": {"type": "array", "items": _ref("Push"), "minItems": 1, "maxItems": settings.api_max_batch}}}
    paths: dict[str, Any] = {
        "/v1/apps/{app}/push": _send("Send one push", _ref("Push"), ACCEPTED_PUSHES, 429),
        "/v1/apps/{app}/push/batch": _send(f"Send 1 to {settings.api_max_batch} pushes, all or none (message i's id: "
                                           "its msg_id, else <Idempotency-Key>-i)", batch, ACCEPTED_PUSHES, 429),
        **{f"/v1/apps/{{app}}/devices/{kind}": _send(summary, _ref("Device"), ACCEPTED_EVENT) for kind, summary in (
            ("bind", "Bind a device (token) to the app, and to a user (pin)"), ("report", "Report a device's details or its new token"),
            ("unbind", "Unbind a device from its user"), ("deregister", "Remove a device: it gets no more pushes"))},
        "/v1/apps/{app}/preferences": _send("Set a user's preference: opt-out or in, unsubscribe, time zone, quiet hours",
                                            _ref("Preference"), ACCEPTED_EVENT),
        "/v1/apps/{app}/messages/{msg_id}": {"get": {
            "summary": "A message's state and lifecycle counts (this app's messages only)", "security": [{"app": [], "secret": []}],
            "parameters": [{"$ref": "#/components/parameters/app"}, {"name": "msg_id", "in": "path", "required": True,
                                                                     "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the message", **_json(_ref("Message"))}, **_errors(400, 401, 403, 404, 503)}}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "pushpipe send API", "version": "1",
                     "description": "Send pushes, manage devices and preferences, read a message's status. Every 2xx to a write "
                                    "means Kafka acknowledged it (acks=all)."},
            "servers": [{"url": settings.api_url}], "paths": paths,
            "components": {
                "schemas": {"Push": PUSH, "Notification": NOTIFICATION, "Device": DEVICE, "Preference": PREFERENCE, "Error": ERROR,
                            "Message": MESSAGE},
                "parameters": {"app": {"name": "app", "in": "path", "required": True, "description": "the caller's app id",
                                       "schema": {"type": "string", "pattern": keys.APP_ID.pattern.removesuffix("\\Z")}},
                               "idempotency": {"name": "Idempotency-Key", "in": "header", "required": False,
                                               "description": "the msg id: a resend with the same key is the same message",
                                               "schema": {"type": "string", "maxLength": keys.MAX_MSG_ID_BYTES}}},
                "securitySchemes": {"app": {"type": "apiKey", "in": "header", "name": "X-Pushpipe-App"},
                                    "secret": {"type": "http", "scheme": "bearer", "description": "the app's secret"}}}}
