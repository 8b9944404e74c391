"""The accepted deliveries of a message or of a pin, read from ClickHouse, in the shape of Elasticsearch's delivery
documents (sinks/elastic.py), which keep every outcome but this one.

An accepted token's record is its `lifecycle_events` row (token, pin, vendor, code, reason, vendor message id, the
vendor's answer time) with its batch attempt's times (sinks/batch_times.py). A pin's rows are found through the
table's bloom filter on `pin`, a message's through its sort key.
"""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings
from pushpipe.sinks import batch_times
from pushpipe.sinks.clickhouse import ClickHouseClient

Doc = dict[str, Any]
COLUMNS = ("msg_id, token, pin, vendor, code, reason, vendor_msg_id, batch_id, campaign, "
           "toUnixTimestamp64Milli(ts) AS completed_at")


def of_message(ch: ClickHouseClient, settings: Settings, app_id: str, msg_id: str, size: int) -> list[Doc]:
    """Up to `size` accepted deliveries of one message of one app."""
    rows = ch.rows(f"""SELECT {COLUMNS} FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND msg_id = {{msg:String}} AND state = 'accepted' LIMIT {int(size)}""",
                   parameters={"app": app_id, "msg": msg_id})
    return as_deliveries(ch, settings, app_id, rows)


def of_pin(ch: ClickHouseClient, settings: Settings, app_id: str, pin: str, size: int) -> list[Doc]:
    """The `size` newest accepted deliveries to one pin of one app, newest first."""
    rows = ch.rows(f"""SELECT {COLUMNS} FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND pin = {{pin:String}} AND state = 'accepted'
                       ORDER BY ts DESC LIMIT {int(size)}""",
                   parameters={"app": app_id, "pin": pin})
    return as_deliveries(ch, settings, app_id, rows)


def as_deliveries(ch: ClickHouseClient, settings: Settings, app_id: str, rows: list[Doc]) -> list[Doc]:
    """Lifecycle rows as delivery documents, each with its batch attempt's times (0 where none was kept)."""
    times = batch_times.of_attempts(ch, settings, app_id, {(r["vendor"], r["batch_id"], int(r["completed_at"])) for r in rows})
    unknown = {"attempt": 0, **dict.fromkeys(batch_times.HOP_FIELDS, 0)}
    return [{**r, "app_id": app_id, "outcome": "accepted", "final": True, "count": 0, **unknown,
             **times.get((r["batch_id"], int(r["completed_at"])), {}), "completed_at": int(r["completed_at"])} for r in rows]
