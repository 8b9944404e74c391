"""What the receipts said of each delivery, read from ClickHouse's lifecycle_events (sinks/lifecycle_ddl.py).

Elasticsearch's delivery documents hold what dispatch did with each token; what happened after the vendor's
answer (delivered, opened, ... or why not) is only in ClickHouse, one row per token and state, where the analytics
job writes it anyway. Updating a delivery document per receipt cost Elasticsearch 100-470 µs of CPU per receipt
(a get, a merge and a reindex of the whole document), more than the rest of the receipt path together; a story
reads its few deliveries' receipt states with one query on lifecycle_events' sort key (app, message, token).

The fields keep the names the delivery documents had: `<state>_at` for delivered, opened, clicked and dismissed,
and `receipt`, `receipt_code`, `receipt_at` for why a push was not delivered (undelivered, switched_off,
invalid_target).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pushpipe.config import Settings
from pushpipe.sinks.clickhouse import ClickHouseClient

Doc = dict[str, Any]
TIMED_STATES = ("delivered", "opened", "clicked", "dismissed")  # a receipt state with its own time field
UNDELIVERED_STATES = ("undelivered", "switched_off", "invalid_target")  # why not: `receipt`, with its code and time
RECEIPT_SOURCES = ("vendor", "sdk")  # a lifecycle row from a receipt (Receipt.source), not from dispatch
FIELDS = (*(f"{s}_at" for s in TIMED_STATES), "receipt", "receipt_code", "receipt_at")


def fields_of(ch: ClickHouseClient, settings: Settings, app_id: str, deliveries: Iterable[Doc]) -> dict[tuple[str, str], Doc]:
    """(msg id, token) -> the receipt fields of those deliveries of one app that a receipt reached."""
    tokens = {d["token"] for d in deliveries if d.get("token")}
    msg_ids = {d["msg_id"] for d in deliveries if d.get("token")}
    if not tokens:
        return {}
    rows = ch.rows(f"""SELECT msg_id, token, state, code, toUnixTimestamp64Milli(ts) AS ts
                       FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND msg_id IN {{msgs:Array(String)}} AND token IN {{tokens:Array(String)}}
                         AND source IN {{sources:Array(String)}}""",
                   parameters={"app": app_id, "msgs": sorted(msg_ids), "tokens": sorted(tokens), "sources": list(RECEIPT_SOURCES)})
    found: dict[tuple[str, str], Doc] = {}
    for row in sorted(rows, key=lambda r: r["ts"]):  # the latest why-not wins, as a receipt's update did
        fields = found.setdefault((row["msg_id"], row["token"]), {})
        if row["state"] in TIMED_STATES:
            fields[f"{row['state']}_at"] = row["ts"]
        else:
            fields.update(receipt=row["state"], receipt_code=row["code"], receipt_at=row["ts"])
    return found


def with_receipts(ch: ClickHouseClient, settings: Settings, app_id: str, deliveries: list[Doc]) -> list[Doc]:
    """The deliveries (Elasticsearch documents of one app) with what their receipts said."""
    found = fields_of(ch, settings, app_id, deliveries)
    return [{**d, **found.get((d["msg_id"], d.get("token") or ""), {})} for d in deliveries]


def hop_times(ch: ClickHouseClient, settings: Settings, app_id: str, msg_id: str) -> dict[str, Doc]:
    """`<state>_at` -> the first, median and last time of the message's timed receipt states, and how many reached it."""
    rows = ch.rows(f"""SELECT state, count() AS n, toUnixTimestamp64Milli(min(ts)) AS first, toUnixTimestamp64Milli(max(ts)) AS last,
                              toInt64(quantileExact(0.5)(toUnixTimestamp64Milli(ts))) AS median
                       FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND msg_id = {{msg:String}} AND state IN {{states:Array(String)}}
                         AND source IN {{sources:Array(String)}}
                       GROUP BY state""",
                   parameters={"app": app_id, "msg": msg_id, "states": list(TIMED_STATES), "sources": list(RECEIPT_SOURCES)})
    return {f"{r['state']}_at": {"n": int(r["n"]), "first": r["first"], "last": r["last"], "median": r["median"]} for r in rows}


def undelivered(ch: ClickHouseClient, settings: Settings, app_id: str, msg_id: str) -> list[Doc]:
    """The message's accepted pushes that a receipt said were not delivered: by state and code, with their count."""
    rows = ch.rows(f"""SELECT state, code, uniqExact(token) AS n FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND msg_id = {{msg:String}} AND state IN {{states:Array(String)}}
                       GROUP BY state, code""",
                   parameters={"app": app_id, "msg": msg_id, "states": list(UNDELIVERED_STATES)})
    return [{"state": r["state"], "code": r["code"], "reason": "", "count": int(r["n"])} for r in rows]
