"""The Flink metrics the jobs report (stream_health.FLINK_METRICS): every Flink series the alert rules, the
dashboards and `pushpipe status` read is still in Prometheus, and the rest is not pushed."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from pushpipe import observe
from pushpipe.config import JOBS, Settings
from pushpipe.stream_health import OPERATOR
from test_stream_health_e2e import query

pytestmark = pytest.mark.stack
ROOT = Path(__file__).parent.parent
READERS = [ROOT / "infra" / "alerting" / "rules.yml", *sorted((ROOT / "infra" / "dashboards").glob("*.json")),
           ROOT / "pushpipe" / "stream_health.py"]
# built in: present from a job's start (the jobs' own counters appear once they count something)
BUILT_IN = re.compile(r"flink_(?:jobmanager|taskmanager)_[A-Za-z_]+")
SOME_SOURCES = {OPERATOR + "pendingRecords"}  # a Kafka source's, once it has read something


def read_series() -> set[str]:
    names = {name for path in READERS for name in BUILT_IN.findall(path.read_text()) if "_stage_" not in name and not name.endswith("_")}
    return names | {OPERATOR + "numRecordsIn", OPERATOR + "pendingRecords"}


def test_every_flink_series_that_is_read_is_reported_and_few_others(pipeline: Settings) -> None:
    wanted = read_series()
    assert {"flink_jobmanager_job_numRestarts", "flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max"} <= wanted
    observe.wait_for(lambda: all(query(pipeline, f'count by (job_name) ({name})') for name in wanted), 120,
                     "every Flink series the rules, dashboards and status read", interval_s=5.0)
    for name in wanted - SOME_SOURCES:
        assert {r["metric"]["job_name"] for r in query(pipeline, f"count by (job_name) ({name})")} >= set(JOBS), name
    pushed = httpx.get(f"{pipeline.pushgateway_url}/metrics", timeout=10).text
    flink = [line for line in pushed.splitlines() if line.startswith("flink_")]
    assert 0 < len(flink) < 400 * len(JOBS), f"{len(flink)} Flink series pushed: the filter lets through more than it should"
