"""The rules a PushRequest must follow to be taken in; one that breaks them goes to push.dlq with the reason."""
from __future__ import annotations

from typing import Any

from pushpipe.jobs.policy.schedule import next_fire
from pushpipe.schemas import keys

Record = dict[str, Any]
SEGMENT_KEYS = ("platform", "brand", "vendor", "app_version", "tag")


class InvalidRequest(ValueError):
    """A request that can never be sent; the message is the reason on the DLQ."""


def validate(request: Record) -> None:
    try:
        _check_ids(request)
    except keys.InvalidId as bad:
        raise InvalidRequest(str(bad)) from None
    target = request["target"]
    if target in ("pin", "pins") and not request["pins"]:
        raise InvalidRequest(f"target {target!r} needs at least one pin")
    if target == "pin" and len(request["pins"]) != 1:
        raise InvalidRequest(f"target 'pin' takes exactly one pin, got {len(request['pins'])}")
    if target == "tokens" and not request["tokens"]:
        raise InvalidRequest("target 'tokens' needs at least one token")
    if target == "segment" and (not request["segment"] or set(request["segment"]) - set(SEGMENT_KEYS)):
        raise InvalidRequest(f"target 'segment' needs filters among {SEGMENT_KEYS}, got {sorted(request['segment'])}")
    if request["recurrence"]:
        try:
            next_fire(request["recurrence"], request["created_at"], request["recurrence_tz"])
        except (ValueError, KeyError) as bad:
            raise InvalidRequest(f"recurrence: {bad}") from None
    if request["deliver_at"] and request["deliver_at"] > request["created_at"] + request["ttl_s"] * 1000:
        raise InvalidRequest(f"deliver_at is {(request['deliver_at'] - request['created_at']) // 1000} s after created_at,"
                             f" beyond the request's TTL of {request['ttl_s']} s: it would expire before it is due")
    note = request["notification"]
    if not (note["title"] or note["body"] or note["data"] or note["template_id"]):
        raise InvalidRequest("notification has no title, body, data or template")


def without_repeats(request: Record) -> Record:
    """The request with each pin and token once, in their first order: a pin listed twice gets one push, not two."""
    return {**request, "pins": list(dict.fromkeys(request["pins"])), "tokens": list(dict.fromkeys(request["tokens"]))}


def _check_ids(request: Record) -> None:
    keys.check_app_id(request["app_id"])
    keys.check_msg_id(request["msg_id"])
    if len(request["pins"]) > keys.MAX_PINS:
        raise keys.InvalidId(f"{len(request['pins'])} pins, at most {keys.MAX_PINS} are allowed in one request")
    if len(request["tokens"]) > keys.MAX_TOKENS:
        raise keys.InvalidId(f"{len(request['tokens'])} tokens, at most {keys.MAX_TOKENS} are allowed in one request")
    for pin in request["pins"]:
        keys.check_pin(pin, "a pin")
    for token in request["tokens"]:
        keys.check_token(token, "a token")
