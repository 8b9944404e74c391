"""The supervisor's record of restarts: run_dir/supervisor/restarts.json, one entry per component.

    {"job-dispatch": {"count": 3, "last_at": 1732870000.5, "reason": "Python worker gone for 10s"}}

Written only by the supervisor (atomically, by rename); read by `pushpipe status` and anything
that wants the counts (a metric, a test).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pushpipe.config import Settings

Record = dict[str, Any]


def path(settings: Settings) -> Path:
    return settings.run_dir / "supervisor" / "restarts.json"


def load(settings: Settings) -> dict[str, Record]:
    try:
        data = json.loads(path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(settings: Settings, name: str, reason: str) -> Record:
    """Count one restart of name, with why; returns its updated entry."""
    records = load(settings)
    entry = records.get(name, {"count": 0})
    entry = {"count": int(entry.get("count", 0)) + 1, "last_at": time.time(), "reason": reason}
    records[name] = entry
    target = path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return entry


def describe(entry: Record | None) -> str:
    """The status column: "0", or "2 (last 11:32:05: Python worker gone for 10s)"."""
    return f"{entry['count']} (last {last(entry)})" if entry and entry.get("count") else "0"


def last(entry: Record | None) -> str:
    """The latest restart, "11:32:05: Python worker gone for 10s"; "" when there was none."""
    if not entry or not entry.get("count"):
        return ""
    at = time.strftime("%H:%M:%S", time.localtime(entry.get("last_at", 0)))
    return f"{at}: {entry.get('reason', '?')}"
