"""Pure request handling at fan-out: validation and building DispatchBatches."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

from jobs.devices import Target
from schemas import codec

Record = dict[str, Any]
SUPPORTED_TARGETS = ("pin", "pins")
NO_VENDOR = "none"  # vendor of a result for a pin with nothing to send to


class InvalidRequest(ValueError):
    """A request that can never be sent; the message is the reason on the DLQ."""


def validate(request: Record) -> None:
    if not request["msg_id"].strip():
        raise InvalidRequest("msg_id is empty")
    if not request["app_id"].strip():
        raise InvalidRequest("app_id is empty")
    if request["target"] not in SUPPORTED_TARGETS:
        raise InvalidRequest(f"target {request['target']!r} is not supported by this fan-out (supported: {SUPPORTED_TARGETS})")
    if not request["pins"]:
        raise InvalidRequest(f"target {request['target']!r} needs at least one pin")
    if request["target"] == "pin" and len(request["pins"]) != 1:
        raise InvalidRequest(f"target 'pin' takes exactly one pin, got {len(request['pins'])}")
    note = request["notification"]
    if not (note["title"] or note["body"] or note["data"]):
        raise InvalidRequest("notification has no title, body or data")


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


def no_devices_result(request: Record, pin: str, now_ms: int) -> Record:
    """The outcome of a pin with nothing to send to: a suppressed result, so nothing vanishes."""
    outcome = {"token": "", "outcome": "suppressed", "code": "no_devices",
               "reason": f"pin {pin} has no enabled {request['environment']} devices", "vendor_msg_id": ""}
    return codec.new_record(
        "DispatchResult",
        batch_id=f"{request['msg_id']}:{NO_VENDOR}:{pin}",
        msg_id=request["msg_id"],
        app_id=request["app_id"],
        vendor=NO_VENDOR,
        priority=request["priority"],
        category=request["category"],
        campaign=request["campaign"],
        outcomes=[outcome],
        requested_at=request["created_at"],
        sent_at=now_ms,
        completed_at=now_ms,
    )
