"""The lifecycle of one push on one device: pure logic of the analytics job's per-message state.

requested -> suppressed / expired / rejected (by reason), or sent -> accepted -> delivered -> opened / clicked.
A dispatch result ends the dispatch part (each state with its time: requested_at, sent_at, completed_at);
receipts add what happened on the device, each once per token (a vendor's callback and the app's ack of the
same delivery count once). Each new state becomes a `lifecycle_events` row carrying the message's and the
device's dimensions and the time since the state before it (`latency_ms`, -1 when that state is unknown).
"""
from __future__ import annotations

from itertools import repeat
from typing import Any, NamedTuple

from pushpipe.schemas import profiles, results
from pushpipe.schemas.lifecycle_rows import Rows, rows_of

Record = dict[str, Any]
Row = dict[str, Any]
MESSAGE_DIMENSIONS = ("priority", "category", "campaign")
# a receipt's state -> the state its latency counts from
AFTER = {"delivered": "accepted", "undelivered": "accepted", "switched_off": "accepted", "invalid_target": "accepted",
         "opened": "delivered", "dismissed": "delivered", "clicked": "opened"}


class TokenLife(NamedTuple):
    """What the analytics job keeps of one token of one message: who it went to and when each state came."""
    vendor: str
    pin: str
    profile: str  # schemas/profiles.py
    environment: str
    times: dict[str, int]  # state -> epoch ms: accepted, then the receipts' states


class Message(NamedTuple):
    """The dimensions every row of a message carries."""
    priority: str
    category: str
    campaign: str


UNKNOWN_MESSAGE = Message("", "", "")  # of receipts counted without their message's results


def message_of(result: Record) -> Message:
    return Message(str(result["priority"]), result["category"], result["campaign"] or "")


def row(ts: int, record: Record, token: str, pin: str, state: str, code: str, n: int, latency_ms: int, vendor: str,
        profile: str, environment: str, message: Message, source: str, recorded_at: int, reason: str = "",
        vendor_msg_id: str = "") -> Row:
    """A lifecycle_events row; `batch_id` (a result's, "" for a receipt) tells apart the token-less rows of one
    message (each shard's skipped devices, each pin's outcome), so each row has a key of its own."""
    return {"ts": ts, "recorded_at": recorded_at, "batch_id": record.get("batch_id", ""), "reason": reason,
            "vendor_msg_id": vendor_msg_id, "app_id": record["app_id"],
            "msg_id": record["msg_id"], "token": token, "pin": pin, "state": state, "code": code, "n": n,
            "latency_ms": latency_ms, "vendor": vendor, **profiles.decode(profile), "environment": environment,
            "priority": message.priority, "category": message.category, "campaign": message.campaign, "source": source}


def result_rows(result: Record) -> Rows:
    """The rows of a DispatchResult's final outcomes: one by one those not accepted, the accepted groups as columns."""
    message = message_of(result)
    environment = str(result.get("environment") or "production")
    source = "fanout" if result["vendor"] == results.NO_VENDOR else "dispatch"
    done = result["completed_at"]
    accepted_latency = max(0, done - (result["due_at"] or result["requested_at"]))
    rows = rows_of([row(done, result, o["token"], o["pin"], o["outcome"], o["code"], results.weight(o),
                        accepted_latency if o["outcome"] == "accepted" else -1, result["vendor"], o.get("profile", ""),
                        environment, message, source, done, o["reason"], o["vendor_msg_id"])
                    for o in result["outcomes"] if o["final"]])  # one not final: its next attempt has its outcome
    shared = row(done, result, "", "", "accepted", "", 1, accepted_latency, result["vendor"], "", environment, message,
                 source, done)
    for group in result.get("accepted", ()):
        tokens = group["tokens"]
        profile_of = {p: profiles.decode(p) for p in set(group.get("profiles") or [""])}  # a device model repeats
        listed = group.get("profiles") or [""] * len(tokens)  # a group written before profiles has none
        varying = {"token": tokens, "pin": group["pins"], **{f: [profile_of[p][f] for p in listed] for f in profiles.FIELDS}}
        rows.add_many(len(tokens), {**shared, "code": group["code"], "reason": group["reason"],
                                    "vendor_msg_id": group["vendor_msg_id"]}, varying)
    return rows


def result_lives(result: Record) -> dict[str, TokenLife]:
    """The life of each token a DispatchResult says was accepted (to attach its receipts to)."""
    vendor, environment = result["vendor"], str(result.get("environment") or "production")
    times = {"accepted": result["completed_at"]}  # shared: a life's times are replaced, never changed in place
    lives = {o["token"]: TokenLife(vendor, o["pin"], o.get("profile", ""), environment, times)
             for o in result["outcomes"] if o["outcome"] == "accepted" and o["final"] and o["token"]}
    for group in result.get("accepted", ()):
        listed = group.get("profiles") or repeat("")  # a group written before profiles has none
        lives.update((token, TokenLife(vendor, pin, profile, environment, times))
                     for token, pin, profile in zip(group["tokens"], group["pins"], listed, strict=False) if token)
    return lives


def receipt_time(receipt: Record) -> int:
    return int(receipt["ts"] or receipt["received_at"])


def add_receipt(life: TokenLife, receipt: Record, message: Message) -> tuple[TokenLife, Row | None]:
    """The token's life after a receipt, and its row; no row when the token already reached that state."""
    state = str(receipt["kind"])
    if state in life.times:
        return life, None
    ts = receipt_time(receipt)
    before = life.times.get(AFTER.get(state, ""))
    latency = max(0, ts - before) if before is not None else -1
    source = str(receipt["source"])
    vendor = life.vendor or receipt["vendor"]
    new_row = row(ts, receipt, receipt["token"], life.pin, state, receipt["code"], 1, latency, vendor, life.profile,
                  life.environment, message, source, receipt["received_at"] or ts)
    # made, not _replace()d: a NamedTuple's _replace costs 1 µs more, once per receipt
    return TokenLife(life.vendor, life.pin, life.profile, life.environment, {**life.times, state: ts}), new_row
