"""The running jobs' options that keep them from waking for nothing (jobs/runtime.py BUNDLE_TIME_MS, the buffer
timeout): read back from each embedded job's own REST API, as Flink applied them."""
from __future__ import annotations

import httpx
import pytest

from pushpipe.config import JOBS, Settings
from pushpipe.jobs.runtime import BUNDLE_TIME_MS

pytestmark = pytest.mark.stack


def job_options(settings: Settings, job: str) -> dict[str, str]:
    base = f"http://127.0.0.1:{settings.flink_rest_port(job)}"
    [running] = [j["id"] for j in httpx.get(f"{base}/jobs", timeout=10).json()["jobs"] if j["status"] == "RUNNING"]
    return {e["key"]: e["value"] for e in httpx.get(f"{base}/jobs/{running}/jobmanager/config", timeout=10).json()}


def test_thread_mode_jobs_have_no_bundle_timer_to_speak_of_and_records_are_never_held(pipeline: Settings) -> None:
    modes = {}
    for job in JOBS:
        options = job_options(pipeline, job)
        modes[job] = options["python.execution-mode"]
        assert options["python.fn-execution.bundle.time"] == BUNDLE_TIME_MS[modes[job]], job
        assert options["execution.buffer-timeout.interval"] == f"{pipeline.flink_buffer_timeout_ms}ms", job
    assert modes == {"fanout": "thread", "dispatch": "thread", "analytics": "thread"}
    assert pipeline.flink_buffer_timeout_ms == 0 and BUNDLE_TIME_MS["thread"] == "60000"
