"""What fan-out writes, built from a request: DispatchBatches, and results for what it did not send."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from pushpipe.jobs.fanout.devices import Target
from pushpipe.jobs.fanout.placement import variant
from pushpipe.schemas import codec, keys
from pushpipe.schemas.results import NO_VENDOR, token_outcome

Record = dict[str, Any]
NO_DEVICES = "no_devices"  # the reason of a pin without any device
MAX_OUTCOMES = 1000  # outcomes per result: a result stays far below Kafka's record limit


def without_pins(request: Record) -> Record:
    """The request as carried with each pin: its pin list would be copied per pin otherwise."""
    return {**request, "pins": []}


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
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
        tokens=[target[0] for target in targets],
        pins=[target[1] for target in targets],
        fallback_tokens={target[0]: target[2] for target in targets if target[2]},
        profiles=[target[3] if len(target) > 3 else "" for target in targets],  # 3 fields: kept by the Batcher from before profiles
        attempt=0,
        requested_at=request["created_at"],
        due_at=due_at(request),
        expires_at=request["created_at"] + request["ttl_s"] * 1000,
        batched_at=now_ms,
        taken_at=request.get("taken_at", 0),
    )


class Unsent(NamedTuple):
    """One outcome of what fan-out did not send: a token's, or (token "") the pin's or the whole request's, or,
    with `count`, that many pins or devices with the same outcome and reason (see TokenOutcome.count)."""
    token: str
    outcome: str
    reason: str
    pin: str = ""
    number: int = 0  # TokenOutcome.count


DUPLICATE = Unsent("", "suppressed", "duplicate")  # a message id seen within the dedup window
EXPIRED = Unsent("", "expired", "past its TTL before it could be sent")


def expired(request: Record, now_ms: int) -> bool:
    deadline: int = request["created_at"] + request["ttl_s"] * 1000
    return now_ms > deadline


def due_now_to_one_pin(request: Record) -> bool:
    """A pin push neither scheduled nor recurring: it goes from the parser straight to its pin, whose state
    deduplicates it and checks its TTL, without a hop through Intake."""
    return request["target"] == "pin" and not request["deliver_at"] and not request["recurrence"]


def without_unknown_pins(outcomes: list[Unsent]) -> list[Unsent]:
    """A pin list's outcomes with its unknown pins (no device ever registered: outcomes without token or pin)
    counted in one outcome, not one each: a request to 100,000 pins, most of them unknown, makes a few
    records downstream, not 100,000. Known pins keep their own outcome, for whoever asks why."""
    unknown = sum(1 for o in outcomes if not o.token and not o.pin and o.reason == NO_DEVICES)
    kept = [o for o in outcomes if o.token or o.pin or o.reason != NO_DEVICES]
    return kept + [Unsent("", "suppressed", NO_DEVICES, number=unknown)] if unknown else kept


def unsent_results(request: Record, key: str, outcomes: list[Unsent], pin: str, now_ms: int) -> Iterator[Record]:
    """Results for what fan-out did not send, so nothing vanishes: MAX_OUTCOMES at most each, their batch ids
    "<msg_id>:<key>" (then ":<n>" for the second and later ones), the same on a replay. `pin` is the pin of
    outcomes that name none."""
    for n, part in enumerate(chunks(outcomes, MAX_OUTCOMES)):
        yield codec.new_record(
            "DispatchResult",
            batch_id=f"{request['msg_id']}:{key}" + (f":{n}" if n else ""),
            msg_id=request["msg_id"],
            app_id=request["app_id"],
            environment=request["environment"],
            vendor=NO_VENDOR,
            priority=request["priority"],
            category=request["category"],
            campaign=request["campaign"],
            outcomes=[{**token_outcome(o.token, o.pin or pin, o.outcome, o.reason.split(":")[0], o.reason, "fanout", "", True),
                       "count": o.number} for o in part],
            requested_at=request["created_at"],
            due_at=due_at(request),
            sent_at=now_ms,
            completed_at=now_ms,
            taken_at=request.get("taken_at", 0),
        )


def due_at(request: Record) -> int:
    """When the request became due: the end of the user's quiet hours once they held it, else its deliver_at,
    else its creation (an occurrence of a recurring request is created when it fires)."""
    due: int = request.get("due_at") or max(request["created_at"], request.get("deliver_at") or 0)
    return due


def occurrence(request: Record, fire_ms: int) -> Record:
    """One firing of a recurring request: its own msg id and TTL clock."""
    return {**request, "msg_id": f"{request['msg_id']}@{fire_ms}", "created_at": fire_ms, "recurrence": None}
