"""Settings for every component, read once from PUSHPIPE_* environment variables and validated
(pydantic-settings): a bad value stops `load()` with the variable's name and what it expects.

Defaults describe the embedded stack that `pushpipe up` starts on loopback.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "PUSHPIPE_"
QUIET_HOURS = r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d"  # "HH:MM-HH:MM"
SECRET_WORDS = ("password", "secret", "private_key", "api_key")


class SettingsError(SystemExit):
    """Bad settings: the message names each PUSHPIPE_* variable and what it expects. Uncaught, Python prints
    the message (no traceback) and exits with status 1."""


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
    apps: str = "apps"  # the app registry (ingress/apps.py), key = app id

    def lane(self, priority: str) -> str:
        return f"{self.dispatch}.{priority}"

    @property
    def lanes(self) -> list[str]:
        return [self.lane(p) for p in PRIORITIES]

    @property
    def compacted(self) -> tuple[str, ...]:
        """The topics that hold the latest record per key (a tombstone deletes the key); the rest are logs."""
        return (self.device_events, self.preferences, self.apps)

    def all(self) -> list[str]:
        return [self.requests, self.device_events, self.preferences, *self.lanes, self.retry, self.results,
                self.receipts, self.device_feedback, self.dlq, self.apps]


Port = Annotated[int, Field(ge=1, le=65535)]
Counts = Annotated[dict[str, Annotated[int, Field(ge=0)]], NoDecode]  # "name=n,name=n" in the environment


class Settings(BaseSettings):
    """Every setting is PUSHPIPE_<NAME> (e.g. PUSHPIPE_KAFKA_BOOTSTRAP); files default to the run directory."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, validate_default=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".pushpipe")
    kafka_bootstrap: str = Field("127.0.0.1:19092", pattern=r"^[^\s,]+:\d+(,[^\s,]+:\d+)*$")  # host:port[,host:port]
    kafka_partitions: int = Field(4, ge=1)
    # the Kafka nodes `pushpipe up` runs, each a broker and a KRaft controller (infra/kafka.py): with more than one,
    # kafka_bootstrap lists them all, or names the first and the others follow 2 ports apart (19092, 19094, 19096;
    # each controller one port above its broker); at 3, topics keep 3 replicas and writes need 2 in sync
    kafka_brokers: int = Field(1, ge=1, le=9)
    es_url: str = "http://127.0.0.1:19200"
    es_index: str = Field("pushpipe-messages", min_length=1)
    es_deliveries_index: str = Field("pushpipe-deliveries", min_length=1)
    es_devices_index: str = Field("pushpipe-devices", min_length=1)  # each device's state, for diagnosis by pin
    es_preferences_index: str = Field("pushpipe-preferences", min_length=1)  # each pin's latest preference settings
    # "embedded" (chDB owned by the chstore process) or "server" (clickhouse-connect)
    clickhouse_mode: Literal["embedded", "server"] = "embedded"
    clickhouse_url: str = "http://127.0.0.1:18123"  # may hold user:password@ (masked wherever it is shown)
    clickhouse_database: str = Field("pushpipe", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    simulator_url: str = "https://127.0.0.1:18443"
    simulator_admin_url: str = "http://127.0.0.1:18444"
    # the receipt gateway as vendors and apps reach it (it listens on this URL's host and port)
    gateway_url: str = "http://127.0.0.1:18480"
    # the web console for support and on-call staff (console/; it listens on this URL's host and port)
    console_url: str = "http://127.0.0.1:18490"
    # the HTTP send and device API (ingress/; it listens on this URL's host and port)
    api_url: str = "http://127.0.0.1:18470"
    # the API's request body limit (413 beyond) and the most messages of one batch send
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024)
    api_max_batch: int = Field(500, ge=1, le=10_000)
    # how long a send waits for Kafka's acknowledgement before it is answered 503
    api_ack_timeout_s: float = Field(10.0, gt=0)
    # the key that signs receipt callback URLs and apps' SDK keys (gateway/signing.py); `pushpipe up` creates it
    receipt_key_file: Path = Path()  # default: run/receipt.key
    # only apps of the registry (`pushpipe app create`) are served: fan-out dead-letters the requests, and the receipt
    # gateway refuses the receipts, of any other app (reason unknown_app); off, they are taken as before apps existed
    app_registry_required: bool = False
    # JSON: {"apns": {ApnsConfig fields}, ...}; `pushpipe up` writes one for the simulators here
    vendors_file: Path = Path()  # default: run/vendors.json
    # JSON dispatch policy: rate limits, exits, fallback, retry, breaker (jobs/dispatch_policy.py)
    dispatch_file: Path = Path()  # default: run/dispatch.json
    templates_file: Path = Path()  # default: run/templates.json
    # JSON delivery policy: caps, vendor quotas, quiet hours, classes (jobs/policy/policyfile.py); optional
    policy_file: Path = Path()  # default: run/policy.json
    # per user per day per category, e.g. PUSHPIPE_DAILY_CAPS="marketing=3,news=5"
    daily_caps: Counts = Field(default_factory=lambda: {"marketing": 3})
    # marketing messages per device per day by vendor, e.g. "hms=2,xiaomi=5"; empty: the vendors' defaults
    # (jobs/policy/classify.py), for pin pushes and broadcasts alike
    vendor_quotas: Counts = Field(default_factory=dict)
    # the app's quiet hours in each user's own time zone, e.g. "22:00-08:00"; empty: only those users set
    quiet_hours: str = Field("", pattern=f"^({QUIET_HOURS})?$")
    dedup_window_s: int = Field(24 * 3600, ge=1)
    dispatch_metrics_port: Port = 19250  # + subtask index
    # dispatch subtasks, each with a Python worker (and GIL) of its own; lanes have kafka_partitions partitions
    dispatch_parallelism: int = Field(1, ge=1)
    batch_size: int = Field(1000, ge=1, le=1000)  # tokens per DispatchBatch (HMS takes 1000 per call)
    flink_rest_port_base: Port = 18081
    # "embedded": each job its own local Flink mini-cluster process (infra/jobs.py); "cluster": a Flink standalone session
    # cluster on this machine, a JobManager and two TaskManagers (infra/flinkcluster.py), the jobs sent with `flink run`
    # (infra/flinksubmit.py); `pushpipe up --cluster` sets it
    flink_mode: Literal["embedded", "cluster"] = "embedded"
    # the cluster's REST API and web UI; its JobManager RPC listens on the next port, Flink's Prometheus reporter on the
    # three after that (the JobManager's and each TaskManager's)
    flink_cluster_rest_port: Port = 18084
    # each job's parallelism on the cluster (embedded: 1, dispatch dispatch_parallelism)
    flink_parallelism: int = Field(2, ge=1)
    # the cluster's checkpoints and savepoints: a directory every JobManager and TaskManager reaches (on a real cluster an
    # object store, e.g. s3://bucket/pushpipe); a path or a URI; "": run/flink-shared
    flink_shared_dir: str = ""
    prometheus_url: str = "http://127.0.0.1:19090"
    # where the jobs push Flink's metrics (Flink's Prometheus reporter would listen on every interface)
    pushgateway_url: str = "http://127.0.0.1:19091"
    alertmanager_url: str = "http://127.0.0.1:19193"
    # where Alertmanager posts alerts (infra/alerting/alertmanager.yml's example webhook receiver)
    alert_webhook_url: str = "http://127.0.0.1:19194/alerts"
    checkpoint_interval_ms: int = Field(5000, ge=100)
    # the longest a record waits in a part-filled network buffer between two operators; 0: none, each record is
    # handed on as it is written. Flink's default, 100, added ~250 ms to a single-pin push's median at 50
    # requests/s. Any timeout above 0 runs a flusher thread per task output that wakes every period: at 10 ms, 6.5% of a
    # core in the idle fan-out job alone; at 100 single-pin requests/s, 0 took 0.77-0.82x the fan-out's CPU per
    # request of 10 and 0.42-0.46x its p99 produce->accept (bench.compare, README "Benchmarks").
    flink_buffer_timeout_ms: int = Field(0, ge=0)
    # the jobs' metrics (Flink's reporter and the operators' business counters); off only to measure what they cost
    stage_metrics: bool = True
    # the jars a job adds to its classpath as a pipeline.jars value (";"-separated file:// URLs); the launcher
    # (infra/jobs.py) builds them and sets it for each job
    pipeline_jars: str = ""
    topics: Topics = Field(default_factory=lambda: Topics())
    # a Confluent-compatible schema registry (comma-separated URLs; user:password@ for basic auth): readers then also take
    # values in Confluent's framing, their writer schemas fetched by id; `pushpipe schemas register` fills it. "": none
    schema_registry_url: str = "http://127.0.0.1:18481"
    # "embedded": `pushpipe up` runs the registry simulator (simulators/schema_registry.py) on schema_registry_url's host
    # and port and registers pushpipe's schemas in it; "server": the URL is your own registry (or "" for none)
    schema_registry_mode: Literal["embedded", "server"] = "embedded"

    @field_validator("daily_caps", "vendor_quotas", mode="before")
    @classmethod
    def _counts(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        counts = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, number = item.partition("=")
            if not sep or not name.strip() or not number.strip().isdigit():
                raise ValueError(f"expected name=count pairs separated by commas, e.g. marketing=3; {item!r} is not one")
            counts[name.strip()] = int(number)
        return counts

    @field_validator("es_url", "clickhouse_url", "simulator_url", "simulator_admin_url", "gateway_url", "console_url", "api_url",
                     "prometheus_url", "pushgateway_url", "alertmanager_url", "alert_webhook_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str) -> str:
        urls = [url.strip().rstrip("/") for url in value.split(",")] if value.strip() else []
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https", "mock") or not parts.hostname:
                raise ValueError("expected http:// or https:// URLs with a host, separated by commas (mock://name: in memory, "
                                 "for tests), or nothing")
        return ",".join(urls)

    @field_validator("schema_registry_mode")
    @classmethod
    def _embedded_registry(cls, mode: str, info: ValidationInfo) -> str:
        """The embedded registry listens on one plain-HTTP address: several URLs or TLS mean a registry of your own."""
        url = info.data.get("schema_registry_url") or ""
        if mode == "embedded" and ("," in url or (url and not url.startswith("http://"))):
            raise ValueError(f"the embedded registry listens on one http:// URL, not PUSHPIPE_SCHEMA_REGISTRY_URL={masked_url(url)!r}; "
                             "set server for a registry of your own")
        return mode

    @model_validator(mode="after")
    def _brokers(self) -> Settings:
        addresses = self.kafka_bootstrap.split(",")
        if len(addresses) == 1 and self.kafka_brokers > 1:
            host, _, port = addresses[0].rpartition(":")
            object.__setattr__(self, "kafka_bootstrap", ",".join(f"{host}:{int(port) + 2 * n}" for n in range(self.kafka_brokers)))
        elif self.kafka_brokers == 1:
            object.__setattr__(self, "kafka_brokers", len(addresses))
        elif len(addresses) != self.kafka_brokers:
            raise ValueError(f"PUSHPIPE_KAFKA_BOOTSTRAP lists {len(addresses)} brokers, PUSHPIPE_KAFKA_BROKERS says "
                             f"{self.kafka_brokers}: list them all, or only the first")
        return self

    @model_validator(mode="after")
    def _run_files(self) -> Settings:
        for name, filename in (("vendors_file", "vendors.json"), ("dispatch_file", "dispatch.json"),
                               ("templates_file", "templates.json"), ("policy_file", "policy.json"),
                               ("receipt_key_file", "receipt.key")):
            if getattr(self, name) == Path():
                object.__setattr__(self, name, self.run_dir / filename)
        return self

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

    @property
    def flink_shared_uri(self) -> str:
        """flink_shared_dir as a URI (file:// for a path), without a trailing slash."""
        value = self.flink_shared_dir or str(self.run_dir / "flink-shared")
        return value.rstrip("/") if "://" in value else Path(value).resolve().as_uri()

    def environ(self) -> dict[str, str]:
        """The PUSHPIPE_* variables that make a child process (a `flink run` client, a job) load these settings: each
        one set other than by its default, in the form it is read back."""
        return {f"{ENV_PREFIX}{name.upper()}": _env_value(getattr(self, name)) for name in sorted(self.model_fields_set)}

    def parallelism(self, job: str) -> int:
        """The job's parallelism: flink_parallelism on the cluster; embedded 1, dispatch dispatch_parallelism."""
        if self.flink_mode == "cluster":
            return self.flink_parallelism
        return self.dispatch_parallelism if job == "dispatch" else 1

    def masked(self) -> dict[str, str]:
        """Every setting as text, passwords in URLs and secret-named settings replaced by ***."""
        shown = {}
        for name in type(self).model_fields:
            value = str(getattr(self, name))
            shown[name] = "***" if any(w in name for w in SECRET_WORDS) and value else masked_url(value)
        return shown


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*@", re.IGNORECASE)


def masked_url(text: str) -> str:
    """`text` with the password of every URL's user:password@ in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _env_value(value: Any) -> str:
    if isinstance(value, dict):  # Counts: name=n,name=n
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load(**overrides: Any) -> Settings:
    """The settings from the environment (and `overrides`); SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as bad:
        raise SettingsError("pushpipe: bad settings:\n  " + "\n  ".join(map(_problem, bad.errors()))) from None


def _problem(error: Any) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    got = error["input"]
    shown = "***" if any(w in name for w in SECRET_WORDS) else masked_url(str(got))
    return f"{ENV_PREFIX}{name.upper()}: {error['msg']}" + ("" if isinstance(got, dict) else f" (got {shown!r})")
