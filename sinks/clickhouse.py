"""ClickHouse access for writers and readers: one DDL, two transports.

- embedded (default): HTTP to the chstore process that owns the chDB directory;
- server: a ClickHouse server through clickhouse-connect.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

import httpx

from pushpipe.config import Settings
from pushpipe.schemas import results

Row = dict[str, Any]


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
            hold_ms UInt32 DEFAULT 0
        ) ENGINE = ReplacingMergeTree
        ORDER BY (app_id, vendor, batch_id, attempt)""",
        # tables made before the hold was counted apart
        f"ALTER TABLE {db}.dispatch_results ADD COLUMN IF NOT EXISTS hold_ms UInt32 DEFAULT 0",
        f"DROP VIEW IF EXISTS {db}.delivery_per_minute",  # recreated below: latency per token, from due
        f"""CREATE VIEW IF NOT EXISTS {db}.delivery_per_minute AS
        SELECT minute, app_id, vendor,
               uniqExact(msg_id) AS messages,
               sum(requested) AS requested, sum(sent) AS sent,
               sum(accepted) AS accepted, sum(failed) AS failed,
               sum(invalid_token) AS invalid_token, sum(throttled) AS throttled,
               sum(unavailable) AS unavailable, sum(rejected) AS rejected,
               sum(expired) AS expired, sum(suppressed) AS suppressed, sum(retried) AS retried,
               quantileExactWeighted(0.5)(latency_ms, accepted) AS p50_latency_ms,
               quantileExactWeighted(0.99)(latency_ms, accepted) AS p99_latency_ms,
               quantileExactWeighted(0.99)(hold_ms, requested) AS p99_hold_ms
        FROM {db}.dispatch_results FINAL
        GROUP BY minute, app_id, vendor""",
    ]


class ClickHouse(Protocol):
    def command(self, sql: str) -> None: ...

    def insert(self, table: str, rows: list[Row]) -> None: ...

    def rows(self, sql: str) -> list[Row]: ...

    def close(self) -> None: ...


class EmbeddedClickHouse:
    """Talks to the chstore process (sinks.chstore) over its ClickHouse-style HTTP API."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout_s)

    def _post(self, sql: str, body: str = "") -> str:
        """ClickHouse HTTP: the query in the URL and INSERT data in the body, or the query as the body."""
        if body:
            response = self._http.post("/", params={"query": sql}, content=body.encode())
        else:
            response = self._http.post("/", content=sql.encode())
        if response.status_code != 200:
            raise RuntimeError(f"ClickHouse error for {sql[:80]!r}: {response.text.strip()}")
        return response.text

    def command(self, sql: str) -> None:
        self._post(sql)

    def insert(self, table: str, rows: list[Row]) -> None:
        if rows:
            body = "\n".join(json.dumps(row, separators=(",", ":")) for row in rows)
            self._post(f"INSERT INTO {table} FORMAT JSONEachRow", body)

    def rows(self, sql: str) -> list[Row]:
        text = self._post(f"{sql} FORMAT JSONEachRow")
        return [json.loads(line) for line in text.splitlines() if line]

    def close(self) -> None:
        self._http.close()


class ServerClickHouse:
    """A ClickHouse server through clickhouse-connect, with the same DDL."""

    def __init__(self, url: str) -> None:
        import clickhouse_connect

        self._client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def insert(self, table: str, rows: list[Row]) -> None:
        if rows:
            columns = list(rows[0])
            self._client.insert(table, [[row[c] for c in columns] for row in rows], column_names=columns)

    def rows(self, sql: str) -> list[Row]:
        return list(self._client.query(sql).named_results())

    def close(self) -> None:
        self._client.close()


def connect(settings: Settings, create: bool = True) -> ClickHouse:
    client: ClickHouse
    if settings.clickhouse_mode == "server":
        client = ServerClickHouse(settings.clickhouse_url)
    elif settings.clickhouse_mode == "embedded":
        client = EmbeddedClickHouse(settings.clickhouse_url)
    else:
        raise ValueError(f"PUSHPIPE_CLICKHOUSE_MODE must be embedded or server, not {settings.clickhouse_mode!r}")
    if create:
        for statement in ddl(settings.clickhouse_database):
            client.command(statement)
    return client


OUTCOME_COLUMNS = ("accepted", "invalid_token", "throttled", "unavailable", "rejected", "expired", "suppressed")
NOT_SENT = ("expired", "suppressed")  # with exit "fanout": rejected before any vendor call


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
        "completed_at": result["completed_at"] / 1000,
        "retried": len(result["outcomes"]) - len(final),
        **counts,
    }
