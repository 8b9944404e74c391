"""DispatchResult outcomes: accepted tokens travel grouped (`accepted`), every other outcome one by one
(`outcomes`). Writers group with `group_accepted`; readers see one list with `token_outcomes`."""
from __future__ import annotations

from typing import Any

Record = dict[str, Any]
GROUP_KEYS = ("code", "reason", "vendor_msg_id", "exit")


def group_accepted(outcomes: list[Record]) -> tuple[list[Record], list[Record]]:
    """Split TokenOutcome records into (the ones that stay one by one, AcceptedTokens groups)."""
    single: list[Record] = []
    groups: dict[tuple[str, ...], Record] = {}
    for o in outcomes:
        if o["outcome"] != "accepted" or not o["final"]:
            single.append(o)
            continue
        key = (o["code"], o["reason"], o["vendor_msg_id"], o["exit"])  # GROUP_KEYS
        group = groups.get(key)
        if group is None:
            group = groups[key] = {**dict(zip(GROUP_KEYS, key)), "tokens": [], "pins": []}
        group["tokens"].append(o["token"])
        group["pins"].append(o["pin"])
    return single, list(groups.values())


def token_outcomes(result: Record) -> list[Record]:
    """Every outcome of a DispatchResult as a TokenOutcome record, the accepted groups expanded."""
    expanded = [{"token": token, "outcome": "accepted", "code": g["code"], "reason": g["reason"],
                 "vendor_msg_id": g["vendor_msg_id"], "pin": pin, "exit": g["exit"], "final": True}
                for g in result.get("accepted", ()) for token, pin in zip(g["tokens"], g["pins"])]
    return [*result["outcomes"], *expanded]


def grouped_count(result: Record) -> int:
    """How many tokens the accepted groups hold (counted without expanding them)."""
    return sum(len(g["tokens"]) for g in result.get("accepted", ()))
