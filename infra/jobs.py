"""The three PyFlink jobs, each a process running its own local Flink mini-cluster.

Each mini-cluster serves Flink's REST API and web UI on its own port, which is how health
is read. For a standalone Flink cluster, submit the same modules with
`flink run -pyexec <venv python> -py jobs/<job>.py`.
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pushpipe import liveness
from pushpipe.config import JOBS, Settings
from pushpipe.infra import beamloopback, flinkrest, process
from pushpipe.infra.service import Health, Problem

STOP_TIMEOUT_S = 30.0
KILL_AFTER_S = 1.0  # a supervisor restart: state comes back from the checkpoint, no clean stop needed
# How long each kind of trouble may last before the supervisor restarts the job's process.
# The job not RUNNING (RESTARTING, FAILING, ...): Flink's own restart waits at most 2 s (flink_config),
# so this long means stuck (issue 19: RESTARTING for good after a checkpoint timed out).
NOT_RUNNING_GRACE_S = 30.0
# RUNNING, but tasks still restoring state or starting their Python: slow, not stuck, on a busy
# machine (up to ~70 s seen with two stacks on 2 cores)
TASKS_STARTING_GRACE_S = 120.0
NO_REST_GRACE_S = 60.0
CHECKPOINT_STALE_S = 300.0  # well under Flink's checkpoint timeout (10 min), a backstop for hangs
CHECKPOINT_READ_S = 10.0  # how often the supervisor reads a job's newest checkpoint (a REST call), not every poll
# The job JVM's own options (PyFlink's local gateway puts JVM_ARGS first on the java command line). C1 only: the
# operators are Python (pemja, thread mode) and C2 kept 5-9% of a core busy in each JVM 13 minutes after a start.
JVM_ARGS = "-XX:TieredStopAtLevel=1"


@dataclass(frozen=True)
class FlinkJob:
    job: str

    @property
    def name(self) -> str:
        return f"job-{self.job}"

    @property
    def version(self) -> str:
        from pushpipe.infra.flink import FLINK_VERSION

        return f"PyFlink {FLINK_VERSION}"

    def address(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings.flink_rest_port(self.job)}"

    def install(self, settings: Settings) -> None:
        from pushpipe.infra.flink import project_jar  # lazy: pyflink is slow to import, and `status` needs none

        project_jar(settings)  # and the connector jars it is compiled against
        beamloopback.lib_dir(settings)

    def start(self, settings: Settings) -> None:
        self.launch(settings)
        self.wait_ready(settings)

    def launch(self, settings: Settings) -> None:
        """Start the job's process unless it runs; returns at once."""
        if not process.is_running(settings, self.name):
            for leftover in (self.tmp_dir(settings), liveness.liveness_dir(settings.run_dir, self.job)):  # a killed run's
                shutil.rmtree(leftover, ignore_errors=True)
            self.tmp_dir(settings).mkdir(parents=True)
            process.start(settings, self.name, [sys.executable, "-m", f"pushpipe.jobs.{self.job}"], env=self.env(settings))

    def log_dir(self, settings: Settings) -> Path:
        """The Flink JVM's log (and RocksDB's LOG files): run_dir/job-<job>/flink-log."""
        return process.service_dir(settings, self.name) / "flink-log"

    def tmp_dir(self, settings: Settings) -> Path:
        """Flink's io.tmp.dirs for this job (jobs/runtime.py flink_config sets the same path)."""
        return process.service_dir(settings, self.name) / "tmp"

    def env(self, settings: Settings) -> dict[str, str]:
        """The job process's environment on top of ours.

        FLINK_LOG_DIR: PyFlink's local gateway writes its JVM log there, not into the installed pyflink
        package (one file shared by every stack, corrupted by concurrent writers). The worker mode
        "process": PyFlink would otherwise start a loopback worker pool, a gRPC server on every
        interface, in each job's client process (thread-mode jobs never use it; dispatch sets it too).
        PUSHPIPE_PIPELINE_JARS: the connector jars and the project's Java, for the job's classpath.
        FLINK_LIB_DIR: pyflink's lib plus Beam's gRPC servers bound to loopback (infra/beamloopback.py);
        PyFlink keeps it only with FLINK_HOME set.
        PUSHPIPE_SCHEMA_REGISTRY_URL: the registry the Python workers fetch Confluent-framed values' writer schemas from
        (schemas/registry.py reads the variable, not the settings): the setting's value, its default included.
        """
        from pushpipe.infra.flink import pipeline_jars

        return {"PUSHPIPE_JOB": self.job, "PUSHPIPE_PIPELINE_JARS": pipeline_jars(settings),
                "PUSHPIPE_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
                "FLINK_LOG_DIR": str(self.log_dir(settings)), "_python_worker_execution_mode": "process", "JVM_ARGS": JVM_ARGS,
                "FLINK_HOME": str(beamloopback.pyflink_home()), "FLINK_LIB_DIR": str(beamloopback.lib_dir(settings))}

    def wait_ready(self, settings: Settings) -> None:
        process.wait_until(lambda: self.health(settings).ok, 180, f"Flink job {self.job}", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=STOP_TIMEOUT_S)

    def restart(self, settings: Settings) -> None:
        """The supervisor's restart: kill what is left (SIGKILL after a few seconds), start again
        from the latest checkpoint (jobs/runtime.py flink_config) and wait until RUNNING."""
        process.stop(settings, self.name, timeout=KILL_AFTER_S)
        self.start(settings)

    def health(self, settings: Settings) -> Health:
        if not process.is_running(settings, self.name):
            return Health(False, "not running")
        views = flinkrest.jobs(self.address(settings))
        if views is None:
            return Health(False, "starting")
        if not views:
            return Health(False, "no job")
        job = views[0]
        if job.all_running:
            return Health(True, "RUNNING")
        if job.state == "RUNNING":  # tasks still initializing: restoring state, starting Python workers
            return Health(False, f"RUNNING ({job.tasks_running}/{job.tasks_total} tasks running)")
        failure = flinkrest.last_exception(self.address(settings), job.jid)
        return Health(False, job.state + (f": {failure}" if failure else ""))

    def jvm(self, settings: Settings) -> int | None:
        """pid of the job's Flink JVM (a child of the job's process), where its operators' Python runs (thread mode)."""
        leader = process.read_pid(settings, self.name)
        found = [p for p in process.descendants(leader) if "-Dlog.file=" in process.cmdline(p)] if leader else []
        return found[0] if found else None

    def problem(self, settings: Settings) -> Problem | None:
        """What keeps the running job from working, for the supervisor (None when it works). A frozen or hung Python
        first: a frozen JVM does not answer REST calls either, and that grace is a minute."""
        hung = liveness.stuck(settings.run_dir, self.job, process.alive)
        if hung:
            return Problem("hung", hung, 0)
        base = self.address(settings)
        views = flinkrest.jobs(base)
        if not views:
            return Problem("rest", "Flink REST API not answering", NO_REST_GRACE_S)
        job = views[0]
        if job.state != "RUNNING":
            failure = flinkrest.last_exception(base, job.jid)
            return Problem("state", f"job {job.state}" + (f": {failure}" if failure else ""), NOT_RUNNING_GRACE_S)
        if not job.all_running:
            return Problem("tasks", f"{job.tasks_running} of {job.tasks_total} tasks running", TASKS_STARTING_GRACE_S)
        acked = latest_ack(base, job.jid)
        if acked is not None:
            age = time.time() - max(acked, job.start_ms) / 1000
            if age > CHECKPOINT_STALE_S:
                return Problem("checkpoint", f"no checkpoint completed for {age:.0f}s", 0)
        return None


_acks: dict[str, tuple[str, float, int | None]] = {}  # REST address -> (its job's id, when read, newest checkpoint's ack)


def latest_ack(base: str, jid: str) -> int | None:
    """The job's newest checkpoint's ack (flinkrest.last_checkpoint_ms), read again once CHECKPOINT_READ_S passed (its
    age matters only past CHECKPOINT_STALE_S), or at once for a job it has not read (a restart's new job id). One entry
    per mini-cluster. With FlinkJob.problem's worker scan skipped for thread-mode jobs and a cheaper /proc scan
    (process.descendants), the supervisor at rest took 4.0% of a core where 6.7 (60 s each)."""
    read_for, read_at, acked = _acks.get(base, ("", float("-inf"), None))
    if read_for != jid or time.monotonic() - read_at >= CHECKPOINT_READ_S:
        acked = flinkrest.last_checkpoint_ms(base, jid)
        _acks[base] = (jid, time.monotonic(), acked)
    return acked


def all_jobs() -> list[FlinkJob]:
    return [FlinkJob(job) for job in JOBS]
