"""The three PyFlink jobs, each a process running its own local Flink mini-cluster.

Each mini-cluster serves Flink's REST API and web UI on its own port, which is how health
is read. For a standalone Flink cluster, submit the same modules with
`flink run -pyexec <venv python> -py jobs/<job>.py`.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from infra import beamloopback, process
from infra.service import Health
from pushpipe.config import JOBS, Settings


@dataclass(frozen=True)
class FlinkJob:
    job: str

    @property
    def name(self) -> str:
        return f"job-{self.job}"

    @property
    def version(self) -> str:
        from infra.flink import FLINK_VERSION

        return f"PyFlink {FLINK_VERSION}"

    def address(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings.flink_rest_port(self.job)}"

    def install(self, settings: Settings) -> None:
        from infra.flink import connector_jars

        connector_jars(settings)
        beamloopback.lib_dir(settings)

    def start(self, settings: Settings) -> None:
        self.launch(settings)
        self.wait_ready(settings)

    def launch(self, settings: Settings) -> None:
        """Start the job's process unless it runs; returns at once."""
        if not process.is_running(settings, self.name):
            shutil.rmtree(self.tmp_dir(settings), ignore_errors=True)  # a killed run's leftovers
            self.tmp_dir(settings).mkdir(parents=True)
            process.start(settings, self.name, [sys.executable, "-m", f"jobs.{self.job}"], env=self.env(settings))

    def log_dir(self, settings: Settings) -> Path:
        """The Flink JVM's log (and RocksDB's LOG files): run_dir/job-<job>/flink-log."""
        return process.service_dir(settings, self.name) / "flink-log"

    def tmp_dir(self, settings: Settings) -> Path:
        """Flink's io.tmp.dirs for this job (jobs/common.py flink_config sets the same path)."""
        return process.service_dir(settings, self.name) / "tmp"

    def env(self, settings: Settings) -> dict[str, str]:
        """The job process's environment on top of ours.

        FLINK_LOG_DIR: PyFlink's local gateway writes its JVM log there, not into the installed pyflink
        package (one file shared by every stack, corrupted by concurrent writers). The worker mode
        "process": PyFlink would otherwise start a loopback worker pool, a gRPC server on every
        interface, in each job's client process (thread-mode jobs never use it; dispatch sets it too).
        FLINK_LIB_DIR: pyflink's lib plus Beam's gRPC servers bound to loopback (infra/beamloopback.py);
        PyFlink keeps it only with FLINK_HOME set.
        """
        return {"FLINK_LOG_DIR": str(self.log_dir(settings)), "_python_worker_execution_mode": "process",
                "FLINK_HOME": str(beamloopback.pyflink_home()), "FLINK_LIB_DIR": str(beamloopback.lib_dir(settings))}

    def wait_ready(self, settings: Settings) -> None:
        process.wait_until(lambda: self.health(settings).ok, 180, f"Flink job {self.job}", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name)

    def health(self, settings: Settings) -> Health:
        if not process.is_running(settings, self.name):
            return Health(False, "not running")
        try:
            jobs = httpx.get(f"{self.address(settings)}/jobs/overview", timeout=2).json()["jobs"]
        except (httpx.HTTPError, ValueError, KeyError):
            return Health(False, "starting")
        states = sorted({j["state"] for j in jobs}) or ["no job"]
        return Health(states == ["RUNNING"], ",".join(states))


def all_jobs() -> list[FlinkJob]:
    return [FlinkJob(job) for job in JOBS]
