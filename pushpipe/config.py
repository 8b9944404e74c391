"""Settings for every component, read once from PUSHPIPE_* environment variables.

Defaults describe the embedded stack that `pushpipe up` starts on loopback.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"PUSHPIPE_{name.upper()}", default)


def _home() -> Path:
    return Path(_env("home", str(Path.home() / ".pushpipe")))


def _caps(text: str) -> dict[str, int]:
    return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}


def _run_file(name: str, filename: str) -> Path:
    """PUSHPIPE_<NAME> if set, else a file in the run directory."""
    return Path(_env(name, str(_home() / "run" / filename)))


JOBS = ("fanout", "dispatch", "analytics")
PRIORITIES = ("high", "normal", "low")


@dataclass(frozen=True)
class Topics:
    requests: str = "push.requests"
    device_events: str = "device.events"
    dispatch: str = "push.dispatch"  # one topic per priority lane: push.dispatch.high, .normal, .low
    retry: str = "push.retry"  # batches waiting for a long retry delay
    results: str = "push.results"
    receipts: str = "push.receipts"
    device_feedback: str = "device.feedback"  # invalid tokens found by dispatch, read by fan-out
    preferences: str = "user.preferences"
    dlq: str = "push.dlq"

    def lane(self, priority: str) -> str:
        return f"{self.dispatch}.{priority}"

    @property
    def lanes(self) -> list[str]:
        return [self.lane(p) for p in PRIORITIES]

    @property
    def compacted(self) -> tuple[str, str]:
        """The topics that hold the latest record per key (a tombstone deletes the key); the rest are logs."""
        return (self.device_events, self.preferences)

    def all(self) -> list[str]:
        return [self.requests, self.device_events, self.preferences, *self.lanes, self.retry, self.results,
                self.receipts, self.device_feedback, self.dlq]


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home)
    kafka_bootstrap: str = field(default_factory=lambda: _env("kafka_bootstrap", "127.0.0.1:19092"))
    kafka_partitions: int = field(default_factory=lambda: int(_env("kafka_partitions", "4")))
    es_url: str = field(default_factory=lambda: _env("es_url", "http://127.0.0.1:19200"))
    es_index: str = field(default_factory=lambda: _env("es_index", "pushpipe-messages"))
    es_deliveries_index: str = field(default_factory=lambda: _env("es_deliveries_index", "pushpipe-deliveries"))
    # "embedded" (chDB owned by the chstore process) or "server" (clickhouse-connect)
    clickhouse_mode: str = field(default_factory=lambda: _env("clickhouse_mode", "embedded"))
    clickhouse_url: str = field(default_factory=lambda: _env("clickhouse_url", "http://127.0.0.1:18123"))
    clickhouse_database: str = field(default_factory=lambda: _env("clickhouse_database", "pushpipe"))
    simulator_url: str = field(default_factory=lambda: _env("simulator_url", "https://127.0.0.1:18443"))
    simulator_admin_url: str = field(default_factory=lambda: _env("simulator_admin_url", "http://127.0.0.1:18444"))
    # JSON: {"apns": {ApnsConfig fields}, ...}; `pushpipe up` writes one for the simulators here
    vendors_file: Path = field(default_factory=lambda: _run_file("vendors_file", "vendors.json"))
    # JSON dispatch policy: rate limits, exits, fallback, retry, breaker (jobs/dispatch_policy.py)
    dispatch_file: Path = field(default_factory=lambda: _run_file("dispatch_file", "dispatch.json"))
    templates_file: Path = field(default_factory=lambda: _run_file("templates_file", "templates.json"))
    # per user per day per category, e.g. PUSHPIPE_DAILY_CAPS="marketing=3,news=5"
    daily_caps: dict[str, int] = field(default_factory=lambda: _caps(_env("daily_caps", "marketing=3")))
    # marketing messages per device per day by vendor, e.g. "hms=2,xiaomi=5"; empty: the vendors' defaults
    # (jobs/policy/classify.py), for pin pushes and broadcasts alike
    vendor_quotas: dict[str, int] = field(default_factory=lambda: _caps(_env("vendor_quotas", "")))
    # the app's quiet hours in each user's own time zone, e.g. "22:00-08:00"; empty: only those users set
    quiet_hours: str = field(default_factory=lambda: _env("quiet_hours", ""))
    dedup_window_s: int = field(default_factory=lambda: int(_env("dedup_window_s", str(24 * 3600))))
    dispatch_metrics_port: int = field(default_factory=lambda: int(_env("dispatch_metrics_port", "19250")))  # + subtask index
    # dispatch subtasks, each with a Python worker (and GIL) of its own; lanes have kafka_partitions partitions
    dispatch_parallelism: int = field(default_factory=lambda: int(_env("dispatch_parallelism", "1")))
    batch_size: int = field(default_factory=lambda: int(_env("batch_size", "1000")))  # tokens per DispatchBatch (HMS takes 1000 per call)
    flink_rest_port_base: int = field(default_factory=lambda: int(_env("flink_rest_port_base", "18081")))
    checkpoint_interval_ms: int = field(default_factory=lambda: int(_env("checkpoint_interval_ms", "5000")))
    topics: Topics = field(default_factory=Topics)

    @property
    def cache_dir(self) -> Path:
        """Downloads (jars, zips) kept across `down`/`up`."""
        return self.home / "cache"

    @property
    def run_dir(self) -> Path:
        """Data, logs and pid files of running services."""
        return self.home / "run"

    def flink_rest_port(self, job: str) -> int:
        """Web UI / REST port of a job's mini-cluster (fanout, dispatch, analytics)."""
        return self.flink_rest_port_base + JOBS.index(job)

    def masked(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def load() -> Settings:
    return Settings()
