"""ClickHouse access for writers and readers: one DDL, one client (clickhouse-connect).

The embedded store (default: the chstore process that owns the chDB directory, sinks/chstore.py) and a
ClickHouse server are reached the same way, by URL.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pushpipe.config import Settings
from pushpipe.schemas import results
from pushpipe.sinks import lifecycle_ddl

Row = dict[str, Any]


# A batch's hops before the vendor's answer (epoch ms, 0: unknown), kept per batch, not per token: a story reads its
# deliveries' times from here (sinks/accepted.py).
BATCH_TIMES = ("requested_at", "taken_at", "due_at", "batched_at", "sent_at")
BATCH_TIMES_DDL = ",\n            ".join(f"{field} Int64 DEFAULT 0" for field in BATCH_TIMES)


def ddl(db: str) -> list[str]:
    """Tables and views, created idempotently at start by whoever connects first."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        # One row per DispatchResult; a replayed result has the same key and is merged away.
        f"""CREATE TABLE IF NOT EXISTS {db}.dispatch_results (
            minute DateTime,
            app_id LowCardinality(String),
            vendor LowCardinality(String),
            priority LowCardinality(String),
            category LowCardinality(String),
            campaign String,
            msg_id String,
            batch_id String,
            attempt UInt16,
            requested UInt32,
            sent UInt32,
            accepted UInt32,
            invalid_token UInt32,
            throttled UInt32,
            unavailable UInt32,
            rejected UInt32,
            expired UInt32,
            suppressed UInt32,
            retried UInt32,
            failed UInt32,
            latency_ms UInt32,
            completed_at DateTime64(3),
            hold_ms UInt32 DEFAULT 0,
            {BATCH_TIMES_DDL},
            INDEX msg_lookup msg_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = ReplacingMergeTree
        ORDER BY (app_id, vendor, batch_id, attempt)""",
        # tables made before the hold was counted apart, and before the batch's hop times
        f"ALTER TABLE {db}.dispatch_results ADD COLUMN IF NOT EXISTS hold_ms UInt32 DEFAULT 0",
        *(f"ALTER TABLE {db}.dispatch_results ADD COLUMN IF NOT EXISTS {field} Int64 DEFAULT 0" for field in BATCH_TIMES),
        f"ALTER TABLE {db}.dispatch_results ADD INDEX IF NOT EXISTS msg_lookup msg_id TYPE bloom_filter GRANULARITY 4",
        f"DROP VIEW IF EXISTS {db}.delivery_per_minute",  # recreated below: latency per token, from due
        f"""CREATE VIEW IF NOT EXISTS {db}.delivery_per_minute AS
        SELECT minute, app_id, vendor,
               uniqExact(msg_id) AS messages,
               sum(requested) AS requested, sum(sent) AS sent,
               sum(accepted) AS accepted, sum(failed) AS failed,
               sum(invalid_token) AS invalid_token, sum(throttled) AS throttled,
               sum(unavailable) AS unavailable, sum(rejected) AS rejected,
               sum(expired) AS expired, sum(suppressed) AS suppressed, sum(retried) AS retried,
               quantileExactWeighted(0.5)(latency_ms, r.accepted) AS p50_latency_ms,
               quantileExactWeighted(0.99)(latency_ms, r.accepted) AS p99_latency_ms,
               quantileExactWeighted(0.99)(hold_ms, r.requested) AS p99_hold_ms
        FROM {db}.dispatch_results AS r FINAL
        GROUP BY minute, app_id, vendor""",
        # one row per receipt: a vendor's callback or an SDK event; a replay rewrites the same row
        f"""CREATE TABLE IF NOT EXISTS {db}.receipts (
            day Date,
            ts DateTime64(3),
            received_at DateTime64(3),
            app_id LowCardinality(String),
            msg_id String,
            vendor LowCardinality(String),
            token String,
            kind LowCardinality(String),
            code LowCardinality(String),
            source LowCardinality(String),
            receipt_id String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY day
        ORDER BY (app_id, msg_id, receipt_id)
        TTL day + INTERVAL 30 DAY""",
        # per message: accepted by the vendors, then the devices it was delivered to, opened on, clicked on (each device
        # once: a vendor's receipt and the SDK's ack of one delivery are one delivered device); replaced on every start
        f"""CREATE OR REPLACE VIEW {db}.message_rates AS
        SELECT app_id, msg_id, sent.accepted AS accepted,
               got.delivered AS delivered, got.opened AS opened, got.clicked AS clicked,
               if(accepted > 0, delivered / accepted, 0) AS delivery_rate,
               if(delivered > 0, opened / delivered, 0) AS open_rate
        FROM (SELECT app_id, msg_id, sum(accepted) AS accepted FROM {db}.dispatch_results FINAL
              GROUP BY app_id, msg_id) AS sent
        LEFT JOIN (SELECT app_id, msg_id, uniqExactIf(token, kind = 'delivered') AS delivered,
                          uniqExactIf(token, kind = 'opened') AS opened, uniqExactIf(token, kind = 'clicked') AS clicked
                   FROM {db}.receipts FINAL GROUP BY app_id, msg_id) AS got USING (app_id, msg_id)""",
    ]


class ClickHouseClient:
    """ClickHouse through clickhouse-connect, the one client path: the embedded store (sinks/chstore.py) and a
    server are both just a URL (`PUSHPIPE_CLICKHOUSE_URL`, user and password in it when needed)."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def insert(self, table: str, rows: list[Row]) -> None:
        """Rows as dicts with the same keys, sent as one binary (Native, compressed) insert."""
        if rows:
            columns = list(rows[0])
            self._client.insert(table, [[row[c] for c in columns] for row in rows], column_names=columns)

    def insert_columns(self, table: str, columns: dict[str, list[Any]]) -> None:
        """Columns by name, all of one length (DateTime64 ones may hold epoch ticks), as one binary insert."""
        if columns and next(iter(columns.values())):
            self._client.insert(table, list(columns.values()), column_names=list(columns), column_oriented=True)

    def rows(self, sql: str, settings: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None) -> list[Row]:
        """The rows as dicts; `parameters` bind the query's {name:Type} placeholders on the server (never formatted in)."""
        return list(self._client.query(sql, parameters=parameters, settings=settings).named_results())

    def text(self, sql: str) -> str:
        """What ClickHouse answers to a query with its own FORMAT clause (Vertical, CSV, JSONEachRow, ...)."""
        return self._client.raw_query(sql).decode()

    def close(self) -> None:
        self._client.close()


def connect(settings: Settings, create: bool = True) -> ClickHouseClient:
    client = ClickHouseClient(settings.clickhouse_url)
    if create:
        for statement in [*ddl(settings.clickhouse_database), *lifecycle_ddl.ddl(settings.clickhouse_database)]:
            client.command(statement)
    return client


FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)  # a query that asks for ClickHouse's own output format
OUTCOME_COLUMNS = ("accepted", "invalid_token", "throttled", "unavailable", "rejected", "expired", "suppressed")
NOT_SENT = ("expired", "suppressed")  # with exit "fanout": rejected before any vendor call


RECEIPT_FIELDS = ("ts", "received_at", "app_id", "msg_id", "vendor", "token", "kind", "code", "source", "receipt_id")
DAY_MS = 86_400_000


def receipt_columns(receipts: list[Row]) -> dict[str, list[Any]]:
    """The receipts rows of Receipts, by column: ts and received_at as epoch ms (DateTime64(3)'s ticks), day as days
    since the epoch (UTC). A row dict per receipt, with its date and datetimes, cost 10x as much to build."""
    columns = {field: [r[field] for r in receipts] for field in RECEIPT_FIELDS}
    return {"day": [ts // DAY_MS for ts in columns["ts"]], **columns}


def utc_time(ms: int) -> dt.datetime:
    """A DateTime64 column's value of epoch milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def result_row(result: Row) -> Row:
    """The dispatch_results row of one DispatchResult: final outcomes counted, tokens to be retried apart."""
    final = [o for o in result["outcomes"] if o["final"]]
    grouped = results.grouped_count(result)  # accepted by a vendor: final, sent, each with a token
    counts = dict.fromkeys(OUTCOME_COLUMNS, 0)
    counts["accepted"] = grouped
    for outcome in final:
        counts[outcome["outcome"]] += results.weight(outcome)
    requested = grouped + sum(1 for o in final if o["token"])
    sent = grouped + sum(1 for o in final if o["token"] and o["outcome"] not in NOT_SENT and o["exit"] != "fanout")
    minute = result["completed_at"] // 60_000 * 60
    due = result["due_at"] or result["requested_at"]
    return {
        "minute": minute,
        "app_id": result["app_id"],
        "vendor": result["vendor"],
        "priority": result["priority"],
        "category": result["category"],
        "campaign": result["campaign"] or "",
        "msg_id": result["msg_id"],
        "batch_id": result["batch_id"],
        "attempt": result["attempt"],
        "requested": requested,
        "sent": sent,
        "failed": sent - counts["accepted"],
        "latency_ms": max(0, result["completed_at"] - due),  # due -> the vendor's answer, for each token of the row
        "hold_ms": max(0, due - result["requested_at"]),  # deliver_at, occurrence or quiet hours: waited on purpose
        "completed_at": dt.datetime.fromtimestamp(result["completed_at"] / 1000, dt.UTC),
        "retried": len(result["outcomes"]) - len(final),
        **counts,
        **{field: result[field] for field in BATCH_TIMES},
        "due_at": due,  # as the delivery documents: an old result without one was due when requested
    }
