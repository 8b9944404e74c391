"""Each stage's figures and the firing alerts, read from Prometheus's HTTP API (what `pushpipe status` shows).

One instant query per figure, grouped by stage (Flink's job_name) or by vendor, with the selectors of
infra/alerting/rules.yml and infra/dashboards/ without their thresholds. A figure with no series (a stage
that has seen nothing yet, a rate over no traffic) is None; so is every figure when Prometheus does not answer.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

from pushpipe.config import masked_url

# The Flink metrics its reporters pass on (Flink's filter syntax, <scope>:<name>,<name>): what the alert rules, the
# dashboards and `pushpipe status` read, and each task's busy and back-pressured time. Unfiltered, each job reports
# ~2,000 series (its Kafka clients' own, network buffers, watermarks), pushed every 5 s and scraped from there.
FLINK_METRICS = ("jobmanager.job:numRestarts,numberOfCompletedCheckpoints,numberOfFailedCheckpoints,lastCheckpointDuration,uptime",
                 "*.operator:numRecordsIn,numRecordsOut,pendingRecords",
                 "*.KafkaConsumer:records-lag-max",
                 "*.task:busyTimeMsPerSecond,backPressuredTimeMsPerSecond",
                 "*:pushpipe_*")  # the jobs' own counters (jobs/counting.py)
STAGES = ("fanout", "dispatch", "analytics", "gateway")
UNITS = {"fanout": "records/s", "dispatch": "tokens/s", "analytics": "records/s", "gateway": "receipts/s"}
RATE = "1m"  # throughput, failures and dead letters (VendorFailureRateHigh's window)
QUANTILE = "5m"  # p99 (DeliveryLatencyHigh's window: a histogram needs more samples)

COUNTS = ("consumer_lag", "open_breakers")  # figures that are whole numbers
OPERATOR = "flink_taskmanager_job_task_operator_"
SOURCES = OPERATOR + 'numRecordsIn{operator_name=~"Source:.*", job_name=~"fanout|analytics"}'  # records read from Kafka
DEAD_LETTERS = OPERATOR + 'numRecordsIn{operator_name=~"dlq.*Writer"}'  # as DeadLettersHigh counts them
PENDING = OPERATOR + "pendingRecords >= 0"  # the Kafka sources' lag; >= 0 drops NaN (a source that has not read yet)
TOKENS = "pushpipe_dispatch_tokens_total"
FAILED = 'pushpipe_dispatch_tokens_total{outcome!="accepted"}'
DUE_TO_ACCEPTED = "pushpipe_batch_due_to_accepted_seconds_bucket"
OPEN = "max by (vendor, exit) (pushpipe_breaker_open) >= bool 1"  # 1 per open exit, 0 closed or half-open


def _or_idle(expr: str, job: str) -> str:
    """expr, or 0 while the scrape job is up but its counter has no series yet (nothing counted since it started)."""
    return f'({expr}) or sum(up{{job="{job}"}} == 1) * 0'


class Query(NamedTuple):
    figure: str  # a StageFigures field
    rows: str  # "job_name": one row per Flink job; "vendor": one per dispatch vendor; else the stage's name
    expr: str


QUERIES = (
    Query("throughput", "job_name", f"sum by (job_name) (rate({SOURCES}[{RATE}]))"),
    Query("throughput", "dispatch", _or_idle(f"sum(rate({TOKENS}[{RATE}]))", "dispatch")),
    Query("throughput", "vendor", f"sum by (vendor) (rate({TOKENS}[{RATE}]))"),
    Query("throughput", "gateway", _or_idle(f"sum(rate(pushpipe_gateway_receipts_total[{RATE}]))", "gateway")),
    Query("consumer_lag", "job_name", f"sum by (job_name) ({PENDING})"),
    # no failed series yet counts as 0 failed; no tokens at all leaves the rate undefined (None)
    Query("failure_rate", "dispatch", f"(sum(rate({FAILED}[{RATE}])) or vector(0)) / sum(rate({TOKENS}[{RATE}]))"),
    Query("failure_rate", "vendor", f"(sum by (vendor) (rate({FAILED}[{RATE}])) or 0 * sum by (vendor) (rate({TOKENS}[{RATE}])))"
                                    f" / sum by (vendor) (rate({TOKENS}[{RATE}]))"),
    Query("p99_latency_s", "dispatch", f"histogram_quantile(0.99, sum by (le) (rate({DUE_TO_ACCEPTED}[{QUANTILE}])))"),
    Query("p99_latency_s", "vendor", f"histogram_quantile(0.99, sum by (vendor, le) (rate({DUE_TO_ACCEPTED}[{QUANTILE}])))"),
    Query("dead_letters_per_s", "job_name", f"sum by (job_name) (rate({DEAD_LETTERS}[{RATE}]))"),
    Query("dead_letters_per_s", "gateway", _or_idle(f"sum(rate(pushpipe_gateway_refused_total[{RATE}]))", "gateway")),
    Query("open_breakers", "dispatch", f"sum({OPEN})"),
    Query("open_breakers", "vendor", f"sum by (vendor) ({OPEN})"),
)


@dataclass(frozen=True)
class StageFigures:
    stage: str
    vendor: str | None = None  # a dispatch vendor's own row
    unit: str = ""  # what throughput counts
    throughput: float | None = None  # per second, over RATE
    consumer_lag: int | None = None  # records waiting in Kafka for the stage's sources
    failure_rate: float | None = None  # the share of tokens not accepted, 0..1
    p99_latency_s: float | None = None  # due to accepted, per batch, over QUANTILE
    dead_letters_per_s: float | None = None
    open_breakers: int | None = None
    firing_alerts: int = 0


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    summary: str
    active_since: str
    stage: str | None  # the stage it concerns, when its labels say
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamHealth:
    prometheus_url: str
    error: str | None  # why there are no figures: Prometheus did not answer, or refused a query
    stages: list[StageFigures]
    alerts: list[Alert]


class PrometheusError(Exception):
    pass


def read(prometheus_url: str, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None) -> StreamHealth:
    """Every figure and the firing alerts; on the first failure, no figures and the reason in `error`."""
    try:
        with httpx.Client(base_url=prometheus_url, timeout=timeout_s, transport=transport) as client:
            results = [(query, instant(client, query.expr)) for query in QUERIES]
            alerts = firing(client)
    except (httpx.HTTPError, PrometheusError, ValueError, KeyError, TypeError) as failed:
        why = str(failed) or type(failed).__name__
        return StreamHealth(masked_url(prometheus_url), masked_url(f"Prometheus at {prometheus_url} did not answer: {why}"), [], [])
    return StreamHealth(masked_url(prometheus_url), None, stage_rows(results, alerts), alerts)


def instant(client: httpx.Client, expr: str) -> list[tuple[dict[str, str], float | None]]:
    """(labels, value) per series; a value that is NaN or infinite (a quantile or a rate over nothing) is None."""
    answer = client.get("/api/v1/query", params={"query": expr})
    try:
        body = answer.json()
    except ValueError:
        raise PrometheusError(f"HTTP {answer.status_code} from {answer.url}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('error', answer.status_code)} (query: {expr})")
    return [(series["metric"], _finite(series["value"][1])) for series in body["data"]["result"]]


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def firing(client: httpx.Client) -> list[Alert]:
    answer = client.get("/api/v1/alerts")
    answer.raise_for_status()
    alerts = [a for a in answer.json()["data"]["alerts"] if a.get("state") == "firing"]
    return sorted((Alert(name=a["labels"].get("alertname", "?"), severity=a["labels"].get("severity", ""),
                         summary=a.get("annotations", {}).get("summary", ""), active_since=a.get("activeAt", ""),
                         stage=alert_stage(a["labels"]), labels=a["labels"]) for a in alerts),
                  key=lambda a: (a.stage or "~", a.name, a.active_since))


def alert_stage(labels: dict[str, str]) -> str | None:
    """The stage an alert is about: its Flink job, its scrape job (pushpipe-<job>, dispatch, gateway), or a vendor's dispatch."""
    for name in (labels.get("job_name", ""), labels.get("job", "").removeprefix("pushpipe-")):
        if name in STAGES:
            return name
    return "dispatch" if "vendor" in labels else None


def stage_rows(results: list[tuple[Query, list[tuple[dict[str, str], float | None]]]], alerts: list[Alert]) -> list[StageFigures]:
    """One row per stage in STAGES order, each dispatch vendor's row after dispatch's."""
    figures: dict[tuple[str, str | None], dict[str, Any]] = defaultdict(dict)
    for query, series in results:
        for labels, value in series:
            if query.rows == "job_name":
                key: tuple[str, str | None] = (labels.get("job_name", ""), None)
            elif query.rows == "vendor":
                key = ("dispatch", labels.get("vendor", ""))
            else:
                key = (query.rows, None)
            figures[key][query.figure] = int(value) if value is not None and query.figure in COUNTS else value
    vendors = sorted({vendor for stage, vendor in figures if vendor})
    keys = [key for stage in STAGES for key in [(stage, None)] + ([("dispatch", v) for v in vendors] if stage == "dispatch" else [])]
    return [StageFigures(stage=stage, vendor=vendor, unit=UNITS[stage], **figures.get((stage, vendor), {}),
                         firing_alerts=sum(1 for a in alerts if a.stage == stage and vendor in (None, a.labels.get("vendor"))))
            for stage, vendor in keys]
