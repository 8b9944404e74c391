"""lifecycle_events rows (sinks/lifecycle_ddl.py) as the analytics job makes them (jobs/lifecycle.py) and
sinks/lifecycle.py inserts them: by column."""
from __future__ import annotations

from itertools import repeat
from typing import Any

from pushpipe.schemas.profiles import FIELDS

Row = dict[str, Any]
COLUMNS = ("ts", "recorded_at", "batch_id", "reason", "vendor_msg_id", "app_id", "msg_id", "token", "pin", "state", "code", "n",
           "latency_ms", "vendor", *FIELDS, "environment", "priority", "category", "campaign", "source")  # a row's keys


class Rows:
    """Lifecycle rows as columns, as ClickHouse's insert takes them: a broadcast batch's 1,000 accepted tokens
    make a few lists, most of them one value repeated, instead of a dict per token (ts and recorded_at in epoch ms)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def __len__(self) -> int:
        return len(self.columns["token"])

    def append(self, one: Row) -> None:
        for c, values in self.columns.items():
            values.append(one[c])

    def extend(self, other: Rows) -> None:
        for c, values in self.columns.items():
            values.extend(other.columns[c])

    def add_many(self, n: int, shared: Row, varying: dict[str, list[Any]]) -> None:
        """n rows: `varying` columns from their lists, every other column the value `shared` has for it."""
        for c, values in self.columns.items():
            values.extend(varying[c] if c in varying else repeat(shared[c], n))

    def rows(self) -> list[Row]:
        return [dict(zip(self.columns, values, strict=True)) for values in zip(*self.columns.values(), strict=True)]

    def only(self, keep: list[bool]) -> Rows:
        kept = Rows()
        kept.columns = {c: [v for v, k in zip(values, keep, strict=True) if k] for c, values in self.columns.items()}
        return kept


def rows_of(rows: list[Row]) -> Rows:
    columns = Rows()
    for one in rows:
        columns.append(one)
    return columns
