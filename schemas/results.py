"""DispatchResult outcomes: accepted tokens travel grouped (`accepted`), every other outcome one by one
(`outcomes`). Writers collect them with `Outcomes`; readers see one list with `token_outcomes`."""
from __future__ import annotations

from itertools import chain, repeat
from typing import Any

Record = dict[str, Any]
NO_VENDOR = "none"  # the vendor of a result for what fan-out did not send to any vendor (a pin without devices)


def token_outcome(token: str, pin: str, outcome: str, code: str, reason: str, exit_: str, vendor_msg_id: str,
                  final: bool, *, profile: str = "") -> Record:
    return {"token": token, "outcome": str(outcome), "code": code, "reason": reason, "vendor_msg_id": vendor_msg_id,
            "pin": pin, "exit": exit_, "final": final, "count": 0, "profile": profile}


def weight(outcome: Record) -> int:
    """How many an outcome counts for: one token, pin or request, or the pins or devices of an aggregated one."""
    return outcome.get("count") or 1


class Outcomes:
    """A result's outcomes as they are added: accepted tokens into groups, any other one by one."""

    def __init__(self) -> None:
        self.single: list[Record] = []  # TokenOutcome records
        self._groups: dict[tuple[str, str, str, str], Record] = {}  # AcceptedTokens by what they share

    def add(self, token: str, pin: str, outcome: str, code: str = "", reason: str = "", exit_: str = "",
            vendor_msg_id: str = "", final: bool = True, *, profile: str = "") -> None:
        if outcome != "accepted" or not final:
            self.single.append(token_outcome(token, pin, outcome, code, reason, exit_, vendor_msg_id, final, profile=profile))
            return
        self.add_accepted([token], [pin], [profile], code, reason, vendor_msg_id, exit_)

    def add_accepted(self, tokens: list[str], pins: list[str], profiles: list[str], code: str, reason: str,
                     vendor_msg_id: str, exit_: str) -> None:
        """Accepted tokens sharing the rest (final): what `add` does for each, at once."""
        shared = (code, reason, vendor_msg_id, exit_)
        group = self._groups.get(shared)
        if group is None:
            group = self._groups[shared] = {"code": code, "reason": reason, "vendor_msg_id": vendor_msg_id,
                                            "exit": exit_, "tokens": [], "pins": [], "profiles": []}
        group["tokens"].extend(tokens)
        group["pins"].extend(pins)
        group["profiles"].extend(profiles)

    @property
    def accepted(self) -> list[Record]:
        return list(self._groups.values())


def token_outcomes(result: Record) -> list[Record]:
    """Every outcome of a DispatchResult as a TokenOutcome record, the accepted groups expanded."""
    expanded = [token_outcome(token, pin, "accepted", g["code"], g["reason"], g["exit"], g["vendor_msg_id"], True, profile=profile)
                for g in result.get("accepted", ())  # a group written before profiles has none: "" each
                for token, pin, profile in zip(g["tokens"], g["pins"], chain(g.get("profiles", ()), repeat("")), strict=False)]
    return [*result["outcomes"], *expanded]


def grouped_count(result: Record) -> int:
    """How many tokens the accepted groups hold (counted without expanding them)."""
    return sum(len(g["tokens"]) for g in result.get("accepted", ()))
