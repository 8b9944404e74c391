"""Writing lifecycle events and device events to ClickHouse (tables: sinks/lifecycle_ddl.py).

Each lifecycle event is inserted once: the materialized views count what is inserted, so a row inserted twice
would be counted twice. The analytics job emits each state of a token once (Flink state), but after a restart
it replays the records since its last checkpoint, whose rows may already be in ClickHouse. Those rows were
recorded before the writer started, so only rows recorded before then (plus a margin for clock differences
between pushpipe's own machines) are checked against the table before they are inserted.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from pushpipe.schemas.lifecycle_rows import Rows
from pushpipe.sinks.clickhouse import ClickHouseClient, utc_time
from pushpipe.sinks.lifecycle_ddl import ATTRIBUTES

log = logging.getLogger("pushpipe.sinks")
Row = dict[str, Any]
KEY = ("token", "pin", "state", "code", "batch_id")  # with app_id and msg_id: one event
CHECKED_PER_QUERY = 2000
MAX_QUERY_SIZE = 1 << 22  # a check's IN list of 2,000 keys is ~0.2 MB, over the 256 KiB default
CLOCK_MARGIN_MS = 5_000  # how far the clocks of pushpipe's machines may differ (NTP keeps them within milliseconds)


class LifecycleWriter:
    """Inserts lifecycle rows into `<db>.lifecycle_events`, none twice (see the module doc)."""

    def __init__(self, client: ClickHouseClient, db: str, started_ms: int) -> None:
        self.client, self.table = client, f"{db}.lifecycle_events"
        self.check_before_ms = started_ms + CLOCK_MARGIN_MS
        self.skipped = 0  # rows found already written (a replay), for tests and logs

    def insert(self, rows: Rows) -> None:
        old = [at <= self.check_before_ms for at in rows.columns["recorded_at"]]
        written = self.already_written(rows.only(old).rows()) if any(old) else set()
        if written:  # rows of a replay after a restart
            total = len(rows)
            rows = rows.only([key_of(r) not in written for r in rows.rows()])
            self.skipped += total - len(rows)
            log.info("%d of %d lifecycle rows were written before a restart: not again", total - len(rows), total)
        self.client.insert_columns(self.table, rows.columns)

    def already_written(self, rows: list[Row]) -> set[tuple[str, ...]]:
        by_message: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
        for r in rows:
            by_message[(r["app_id"], r["msg_id"])].append(tuple(r[k] for k in KEY))
        found: set[tuple[str, ...]] = set()
        for (app_id, msg_id), keys in by_message.items():
            for start in range(0, len(keys), CHECKED_PER_QUERY):
                found |= self._existing(app_id, msg_id, keys[start:start + CHECKED_PER_QUERY])
        return found

    def _existing(self, app_id: str, msg_id: str, keys: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
        listed = ", ".join(f"({', '.join(_literal(v) for v in key)})" for key in keys)
        sql = (f"SELECT {', '.join(KEY)} FROM {self.table} WHERE app_id = {_literal(app_id)} AND "
               f"msg_id = {_literal(msg_id)} AND ({', '.join(KEY)}) IN ({listed})")
        return {(app_id, msg_id, *(str(r[k]) for k in KEY)) for r in self.client.rows(sql, {"max_query_size": MAX_QUERY_SIZE})}


def key_of(r: Row) -> tuple[str, ...]:
    return (r["app_id"], r["msg_id"], *(r[k] for k in KEY))


def device_row(event: dict[str, Any]) -> Row:
    """The device_events row of one DeviceEvent."""
    return {"ts": utc_time(event["ts"]), "app_id": event["app_id"], "token": event["token"], "kind": str(event["kind"]),
            "reason": event.get("reason") or "", **{a: str(event.get(a) or "") for a in ATTRIBUTES}}



def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
