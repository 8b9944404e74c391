"""The three jobs on the standalone cluster (flink_mode cluster): each sent with `flink run -d` at flink_parallelism,
with what infra/flinkship.py ships, and watched through the cluster's REST API.

The job's id is recorded in run/flink-cluster/jobs/<job>.jid. Stopping cancels the job: its checkpoints are retained
(jobs/runtime.py), and the next submission resumes from the latest one in the shared directory. A failing job is
restarted by Flink's own restart strategy on the cluster; the supervisor watches the cluster's processes, not the jobs
(they have no process of their own here).

Measured on 2 cores: `flink run` returns in ~15-25 s (the client JVM and Python build and upload the graph); the job is
RUNNING with all its subtasks ~30 s later (each TaskManager pip-installs the worker dependencies from the shipped wheels
into the job's own directory, then starts its Python workers).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pushpipe.config import JOBS, Settings
from pushpipe.infra import flinkcluster, flinkrest, flinkship, process
from pushpipe.infra.service import Health

SUBMIT_TIMEOUT_S = 180.0
RUNNING_TIMEOUT_S = 240.0
CANCEL_TIMEOUT_S = 30.0
SAVEPOINT_TIMEOUT_S = 120.0
REST_ANSWER_S = 30.0
T = TypeVar("T")
_SUBMITTED = re.compile(r"JobID ([0-9a-f]{32})")
ACTIVE = ("INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "CANCELLING", "RECONCILING")


class SubmitFailed(RuntimeError):
    """`flink run` did not submit the job."""


class UpgradeFailed(RuntimeError):
    """The job could not be stopped with a savepoint, or the cluster has no room for it."""


def run_command(settings: Settings, job: str, shipment: flinkship.Shipment, savepoint: str | None = None) -> list[str]:
    """`flink run` for one job: detached, at flink_parallelism, the job's module (-pym) from the shipped project (-pyfs),
    its worker dependencies installed from the shipped wheel cache (-pyreq), the graph built by this machine's Python
    (-pyclientexec, where pushpipe is installed), from `savepoint` (-s) if given. The cluster's address and Python come
    from its config.yaml. No --allowNonRestoredState: every operator has a uid, and the jobs set
    execution.state-recovery.ignore-unclaimed-state themselves (state of an operator a new version dropped)."""
    restore = ["-s", savepoint] if savepoint else []
    return [flinkcluster.flink_bin("flink"), "run", "-d", "-p", str(settings.flink_parallelism), *restore,
            "-pym", f"pushpipe.jobs.{job}", "-pyfs", str(shipment.project),
            "-pyreq", f"{shipment.requirements}#{shipment.wheels}", "-pyclientexec", sys.executable]


def submitted_id(output: str) -> str:
    found = _SUBMITTED.search(output)
    if found is None:
        raise SubmitFailed("flink run printed no JobID:\n" + "\n".join(output.strip().splitlines()[-15:]))
    return found.group(1)


def jid_file(settings: Settings, job: str) -> Path:
    return flinkcluster.cluster_dir(settings) / "jobs" / f"{job}.jid"


def completed_savepoint(base: str, jid: str, trigger: str) -> flinkrest.SavepointView:
    """Poll the savepoint until the cluster says COMPLETED (with a location, or the failure)."""
    deadline = time.monotonic() + SAVEPOINT_TIMEOUT_S
    while time.monotonic() < deadline:
        view = flinkrest.savepoint(base, jid, trigger)
        if view is not None and view.status == "COMPLETED":
            return view
        time.sleep(0.5)
    raise UpgradeFailed(f"no savepoint of job {jid} within {SAVEPOINT_TIMEOUT_S:.0f}s")


def savepoint_file(settings: Settings, job: str) -> Path:
    """The job's last savepoint (`pushpipe upgrade`), a URI."""
    return flinkcluster.cluster_dir(settings) / "jobs" / f"{job}.savepoint"


@dataclass(frozen=True)
class ClusterJob:
    job: str

    @property
    def name(self) -> str:
        return f"job-{self.job}"

    @property
    def version(self) -> str:
        return flinkcluster.JobManager().version

    def jid(self, settings: Settings) -> str | None:
        try:
            return jid_file(settings, self.job).read_text().strip() or None
        except OSError:
            return None

    def address(self, settings: Settings) -> str:
        return f"{flinkcluster.rest_url(settings)}/#/job/running/{self.jid(settings) or ''}"

    def install(self, settings: Settings) -> None:
        from pushpipe.infra.flink import project_jar

        project_jar(settings)  # and the connector jars
        flinkship.prepare(settings)

    def start(self, settings: Settings) -> None:
        self.launch(settings)
        self.wait_ready(settings)

    def launch(self, settings: Settings, savepoint: str | None = None) -> None:
        """Submit the job unless it is on the cluster (from `savepoint` if given); returns once `flink run` has."""
        if self.view(settings) is not None:
            return
        from pushpipe.infra.flink import pipeline_jars

        began = time.monotonic()
        env = {**os.environ, **settings.environ(), **flinkcluster.flink_env(settings), "PUSHPIPE_HOME": str(settings.home),
               "PUSHPIPE_FLINK_MODE": "cluster", "PUSHPIPE_PIPELINE_JARS": pipeline_jars(settings)}
        done = subprocess.run(run_command(settings, self.job, flinkship.prepare(settings), savepoint), env=env, capture_output=True,
                              text=True, timeout=SUBMIT_TIMEOUT_S, cwd=flinkcluster.cluster_dir(settings))
        jid = submitted_id(done.stdout + done.stderr)
        jid_file(settings, self.job).parent.mkdir(parents=True, exist_ok=True)
        jid_file(settings, self.job).write_text(jid + "\n")
        with process.log_file(settings, self.name).open("a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} submitted {jid} in {time.monotonic() - began:.1f}s\n")

    def wait_ready(self, settings: Settings) -> None:
        process.wait_until(lambda: self.health(settings).ok, RUNNING_TIMEOUT_S, f"Flink job {self.job} on the cluster")

    def view(self, settings: Settings) -> flinkrest.JobView | None:
        """The recorded job, while the cluster has it active."""
        jid = self.jid(settings)
        views = flinkrest.jobs(flinkcluster.rest_url(settings)) if jid else None
        return next((v for v in views or [] if v.jid == jid and v.state in ACTIVE), None)

    def stop(self, settings: Settings) -> None:
        """Cancel the job (its checkpoints stay for the next submission)."""
        view = self.view(settings)
        if view is not None:
            flinkrest.cancel(flinkcluster.rest_url(settings), view.jid)
            deadline = time.monotonic() + CANCEL_TIMEOUT_S
            while self.view(settings) is not None and time.monotonic() < deadline:
                time.sleep(0.5)
        jid_file(settings, self.job).unlink(missing_ok=True)

    def stop_with_savepoint(self, settings: Settings) -> str:
        """Stop the job with a savepoint in the shared savepoint dir; returns its URI, also recorded in <job>.savepoint."""
        from pushpipe.jobs.runtime import savepoint_uri

        view = self.view(settings)
        if view is None:
            raise UpgradeFailed(f"{self.job} is not running on the cluster")
        base = flinkcluster.rest_url(settings)
        trigger = flinkrest.stop_with_savepoint(base, view.jid, savepoint_uri(settings, self.job))
        done = completed_savepoint(base, view.jid, trigger)
        if not done.location:
            raise UpgradeFailed(f"{self.job}: no savepoint: {done.failure}")
        savepoint_file(settings, self.job).write_text(done.location + "\n")
        process.wait_until(lambda: self.view(settings) is None, CANCEL_TIMEOUT_S, f"{self.job} to finish")
        jid_file(settings, self.job).unlink(missing_ok=True)
        return done.location

    def health(self, settings: Settings) -> Health:
        if self.jid(settings) is None:
            return Health(False, "not submitted")
        job = self.view(settings)
        if job is None:
            return Health(False, "not on the cluster")
        if job.all_running:
            return Health(True, f"RUNNING, parallelism {settings.flink_parallelism} ({job.tasks_total} subtasks)")
        if job.state == "RUNNING":
            return Health(False, f"RUNNING ({job.tasks_running}/{job.tasks_total} subtasks running)")
        failure = flinkrest.last_exception(flinkcluster.rest_url(settings), job.jid)
        return Health(False, job.state + (f": {failure}" if failure else ""))


def all_jobs() -> list[ClusterJob]:
    return [ClusterJob(job) for job in JOBS]


@dataclass(frozen=True)
class Step:
    what: str
    seconds: float


def upgrade(settings: Settings, job: str, parallelism: int | None = None,
            report: Callable[[Step], None] = lambda step: None) -> list[Step]:
    """Stop the job with a savepoint and submit the code installed now from it, at `parallelism` (default: the
    settings'); returns once the new job is RUNNING. Keyed state (device directories, dedup windows, schedules) moves
    with the savepoint, the send ledger is a file beside the jobs; the Kafka offsets are in the savepoint too."""
    target = settings.model_copy(update={"flink_parallelism": parallelism}) if parallelism else settings
    cluster_job = ClusterJob(job)
    current = cluster_job.view(settings)
    if current is None:
        raise UpgradeFailed(f"{job} is not running on the cluster: start it with `pushpipe up --cluster`")
    check_room(settings, cluster_job, target.flink_parallelism)
    steps: list[Step] = []

    def timed(what: str, action: Callable[[], object]) -> None:
        began = time.monotonic()
        action()
        steps.append(Step(what, time.monotonic() - began))
        report(steps[-1])

    cluster_job.install(target)  # the new code shipped before the old job stops: the gap holds only the restore
    saved: list[str] = []
    timed("stopped with a savepoint", lambda: saved.append(cluster_job.stop_with_savepoint(settings)))
    timed(f"submitted from {saved[0]}", lambda: cluster_job.launch(target, saved[0]))
    timed(f"RUNNING at parallelism {target.flink_parallelism}", lambda: cluster_job.wait_ready(target))
    return steps


def check_room(settings: Settings, job: ClusterJob, parallelism: int) -> None:
    """Refuse before stopping anything when the cluster's free slots, with those the job frees, are too few (a slot
    holds one subtask of each of a job's operators)."""
    base, jid = flinkcluster.rest_url(settings), job.jid(settings)
    # a JobManager on a busy machine may not answer one call in time: asked again, never taken for "no slots"
    vertices = answer(lambda: flinkrest.vertex_parallelism(base, jid) if jid else [], f"the job {job.job}'s subtasks")
    view = answer(lambda: flinkrest.cluster(base), "the cluster's slots")
    held = max((p for _, p in vertices), default=0)
    if view.slots_free + held < parallelism:
        raise UpgradeFailed(f"{job.job} at parallelism {parallelism} needs {parallelism} slots: {view.slots_free} free "
                            f"and {held} of its own (raise taskmanager.numberOfTaskSlots, infra/flinkcluster.py)")


def answer(ask: Callable[[], T | None], what: str, timeout_s: float = REST_ANSWER_S) -> T:
    """What the cluster's REST API answers to `ask`, asked again each second until it answers."""
    deadline = time.monotonic() + timeout_s
    while (found := ask()) is None:
        if time.monotonic() > deadline:
            raise UpgradeFailed(f"the cluster's REST API did not say {what} in {timeout_s:.0f}s")
        time.sleep(1)
    return found
