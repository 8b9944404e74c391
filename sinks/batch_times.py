"""Each batch's hop times up to the vendor's answer, read from ClickHouse's dispatch_results (sinks/clickhouse.py).

A batch attempt's times (produced, taken in, due, batched, sent, answered) are the same for each of its tokens, so
they are kept once per batch attempt, not once per token: the accepted deliveries take theirs from here
(sinks/accepted.py), and a message's hop times are these, weighted by the tokens each attempt ended.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pushpipe.config import Settings
from pushpipe.sinks.clickhouse import BATCH_TIMES, ClickHouseClient

Doc = dict[str, Any]
HOP_FIELDS = (*BATCH_TIMES, "completed_at")
COMPLETED_MS = "toUnixTimestamp64Milli(completed_at)"
# the tokens an attempt ended (final outcomes); an attempt without tokens (a pin's or a request's outcome) counts once
WEIGHT = "if(requested = 0 AND retried = 0, 1, requested)"


def of_attempts(ch: ClickHouseClient, settings: Settings, app_id: str, attempts: Iterable[tuple[str, str, int]]) -> dict[tuple[str, int], Doc]:
    """(batch id, completed_at) -> that attempt's `attempt` and times, for (vendor, batch id, completed_at) of one app
    (a lifecycle row's ts is its attempt's completed_at)."""
    wanted = set(attempts)
    if not wanted:
        return {}
    rows = ch.rows(f"""SELECT batch_id, attempt, {", ".join(BATCH_TIMES)}, {COMPLETED_MS} AS completed_at
                       FROM {settings.clickhouse_database}.dispatch_results FINAL
                       WHERE app_id = {{app:String}} AND vendor IN {{vendors:Array(String)}} AND batch_id IN {{batches:Array(String)}}""",
                   parameters={"app": app_id, "vendors": sorted({v for v, _, _ in wanted}),
                               "batches": sorted({b for _, b, _ in wanted})})
    return {(r["batch_id"], int(r["completed_at"])): {k: int(v) for k, v in r.items() if k != "batch_id"} for r in rows}


def of_message(ch: ClickHouseClient, settings: Settings, app_id: str, msg_id: str) -> dict[str, Doc]:
    """Per hop field: the first, median and last time among the message's batch attempts, and how many tokens (or
    token-less outcomes) have it; a field no attempt has is left out."""
    fields = {field: COMPLETED_MS if field == "completed_at" else field for field in HOP_FIELDS}
    summaries = ", ".join(f"sumIf(w, {e} > 0) AS {f}_n, minIf({e}, {e} > 0) AS {f}_first, maxIf({e}, {e} > 0) AS {f}_last, "
                          f"quantileExactWeightedIf(0.5)({e}, w, {e} > 0) AS {f}_median" for f, e in fields.items())
    rows = ch.rows(f"""SELECT {summaries} FROM (SELECT *, {WEIGHT} AS w FROM {settings.clickhouse_database}.dispatch_results FINAL
                                             WHERE app_id = {{app:String}} AND msg_id = {{msg:String}})""",
                   parameters={"app": app_id, "msg": msg_id})
    found = rows[0] if rows else {}
    return {f: {"n": int(found[f"{f}_n"]), "first": int(found[f"{f}_first"]), "last": int(found[f"{f}_last"]),
                "median": int(found[f"{f}_median"])} for f in HOP_FIELDS if found.get(f"{f}_n")}
