"""Pure request handling at fan-out: validation and building DispatchBatches."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

from jobs.devices import Target
from jobs.policy.schedule import next_fire
from schemas import codec

Record = dict[str, Any]
SEGMENT_KEYS = ("platform", "brand", "vendor", "app_version", "tag")
NO_VENDOR = "none"  # vendor of a result for a pin with nothing to send to


class InvalidRequest(ValueError):
    """A request that can never be sent; the message is the reason on the DLQ."""


def validate(request: Record) -> None:
    if not request["msg_id"].strip():
        raise InvalidRequest("msg_id is empty")
    if not request["app_id"].strip():
        raise InvalidRequest("app_id is empty")
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
    note = request["notification"]
    if not (note["title"] or note["body"] or note["data"] or note["template_id"]):
        raise InvalidRequest("notification has no title, body, data or template")


def without_pins(request: Record) -> Record:
    """The request as carried with each pin: its pin list would be copied per pin otherwise."""
    return {**request, "pins": []}


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch(request: Record, vendor: str, targets: list[Target], now_ms: int) -> Record:
    return codec.new_record(
        "DispatchBatch",
        batch_id=f"{request['msg_id']}:{vendor}:{uuid.uuid4().hex[:12]}",
        msg_id=request["msg_id"],
        app_id=request["app_id"],
        environment=request["environment"],
        vendor=vendor,
        priority=request["priority"],
        category=request["category"],
        campaign=request["campaign"],
        notification=request["notification"],
        tokens=[t for t, _, _ in targets],
        pins=[p for _, p, _ in targets],
        fallback_tokens={t: f for t, _, f in targets if f},
        attempt=0,
        requested_at=request["created_at"],
        expires_at=request["created_at"] + request["ttl_s"] * 1000,
        batched_at=now_ms,
    )


def unsent_result(request: Record, key: str, outcomes: list[tuple[str, str, str]], pin: str, now_ms: int) -> Record:
    """A result for what fan-out did not send (token "" = the whole request or pin), so nothing vanishes."""
    return codec.new_record(
        "DispatchResult",
        batch_id=f"{request['msg_id']}:{key}",
        msg_id=request["msg_id"],
        app_id=request["app_id"],
        vendor=NO_VENDOR,
        priority=request["priority"],
        category=request["category"],
        campaign=request["campaign"],
        outcomes=[{"token": token, "outcome": outcome, "code": reason.split(":")[0], "reason": reason,
                   "vendor_msg_id": "", "pin": pin, "exit": "fanout", "final": True}
                  for token, outcome, reason in outcomes],
        requested_at=request["created_at"],
        sent_at=now_ms,
        completed_at=now_ms,
    )


def occurrence(request: Record, fire_ms: int) -> Record:
    """One firing of a recurring request: its own msg id and TTL clock."""
    return {**request, "msg_id": f"{request['msg_id']}@{fire_ms}", "created_at": fire_ms, "recurrence": None}
