"""Pure request handling at fan-out: validation and building DispatchBatches."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from pushpipe.jobs import keys
from pushpipe.jobs.devices import Target
from pushpipe.jobs.expand import variant
from pushpipe.jobs.policy.schedule import next_fire
from pushpipe.schemas import codec

Record = dict[str, Any]
SEGMENT_KEYS = ("platform", "brand", "vendor", "app_version", "tag")
NO_VENDOR = "none"  # vendor of a result for a pin with nothing to send to
NO_DEVICES = "no_devices"  # the reason of a pin without any device


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


def without_pins(request: Record) -> Record:
    """The request as carried with each pin: its pin list would be copied per pin otherwise."""
    return {**request, "pins": []}


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch(request: Record, vendor: str, targets: list[Target], now_ms: int, position: str) -> Record:
    """A DispatchBatch; `position` tells it from the message's other batches of this vendor and text (see keys.batch_id)."""
    text = variant(request["notification"])
    return codec.new_record(
        "DispatchBatch",
        batch_id=keys.batch_id(request["app_id"], request["msg_id"], vendor, text, position),
        msg_id=request["msg_id"],
        app_id=request["app_id"],
        environment=request["environment"],
        vendor=vendor,
        priority=request["priority"],
        category=request["category"],
        message_class=request.get("message_class", ""),
        campaign=request["campaign"],
        notification=request["notification"],
        tokens=[t for t, _, _ in targets],
        pins=[p for _, p, _ in targets],
        fallback_tokens={t: f for t, _, f in targets if f},
        attempt=0,
        requested_at=request["created_at"],
        due_at=due_at(request),
        expires_at=request["created_at"] + request["ttl_s"] * 1000,
        batched_at=now_ms,
    )


class Unsent(NamedTuple):
    """One outcome of what fan-out did not send: a token's, or (token "") the pin's or the whole request's, or,
    with `count`, that many pins or devices with the same outcome and reason (see TokenOutcome.count)."""
    token: str
    outcome: str
    reason: str
    pin: str = ""
    count: int = 0


def without_unknown_pins(outcomes: list[Unsent]) -> list[Unsent]:
    """A pin list's outcomes with its unknown pins (no device ever registered: outcomes without token or pin)
    counted in one outcome, not one each: a request to 100,000 pins, most of them unknown, makes a few
    records downstream, not 100,000. Known pins keep their own outcome, for whoever asks why."""
    unknown = sum(1 for o in outcomes if not o.token and not o.pin and o.reason == NO_DEVICES)
    kept = [o for o in outcomes if o.token or o.pin or o.reason != NO_DEVICES]
    return kept + [Unsent("", "suppressed", NO_DEVICES, count=unknown)] if unknown else kept


MAX_OUTCOMES = 1000  # outcomes per result: a result stays far below Kafka's record limit


def unsent_results(request: Record, key: str, outcomes: list[tuple], pin: str, now_ms: int) -> Iterator[Record]:
    """Results for what fan-out did not send, so nothing vanishes: MAX_OUTCOMES at most each, their batch ids
    "<msg_id>:<key>" (then ":<n>" for the second and later ones), the same on a replay. `pin` is the pin of
    outcomes that name none."""
    for n, part in enumerate(chunks([Unsent(*o) for o in outcomes], MAX_OUTCOMES)):
        yield codec.new_record(
            "DispatchResult",
            batch_id=f"{request['msg_id']}:{key}" + (f":{n}" if n else ""),
            msg_id=request["msg_id"],
            app_id=request["app_id"],
            vendor=NO_VENDOR,
            priority=request["priority"],
            category=request["category"],
            campaign=request["campaign"],
            outcomes=[{"token": o.token, "outcome": o.outcome, "code": o.reason.split(":")[0], "reason": o.reason,
                       "vendor_msg_id": "", "pin": o.pin or pin, "exit": "fanout", "final": True, "count": o.count}
                      for o in part],
            requested_at=request["created_at"],
            due_at=due_at(request),
            sent_at=now_ms,
            completed_at=now_ms,
        )


def due_at(request: Record) -> int:
    """When the request became due: the end of the user's quiet hours once they held it, else its deliver_at,
    else its creation (an occurrence of a recurring request is created when it fires)."""
    return request.get("due_at") or max(request["created_at"], request.get("deliver_at") or 0)


def occurrence(request: Record, fire_ms: int) -> Record:
    """One firing of a recurring request: its own msg id and TTL clock."""
    return {**request, "msg_id": f"{request['msg_id']}@{fire_ms}", "created_at": fire_ms, "recurrence": None}
