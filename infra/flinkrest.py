"""What Flink's REST API says (a job's mini-cluster, or the standalone cluster): jobs' state, tasks, last exception,
last checkpoint; the cluster's TaskManagers and slots. Every call answers None when the REST API does not."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from pushpipe.infra import http

TIMEOUT_S = 2.0


@dataclass(frozen=True)
class JobView:
    jid: str
    state: str  # RUNNING, RESTARTING, INITIALIZING, FAILING, FAILED, ...
    start_ms: int
    tasks_running: int
    tasks_total: int
    name: str = ""

    @property
    def all_running(self) -> bool:
        return self.state == "RUNNING" and self.tasks_total > 0 and self.tasks_running == self.tasks_total


def _get(base: str, path: str) -> Any:
    try:
        return http.client().get(f"{base}{path}", timeout=TIMEOUT_S).json()
    except (httpx.HTTPError, ValueError):
        return None


def jobs(base: str) -> list[JobView] | None:
    """Every job of the mini-cluster, newest first (one, unless it was resubmitted)."""
    doc = _get(base, "/jobs/overview")
    if not isinstance(doc, dict) or "jobs" not in doc:
        return None
    views = [JobView(j["jid"], j["state"], int(j.get("start-time", 0)), int(j["tasks"].get("running", 0)),
                     int(j["tasks"].get("total", 0)), j.get("name", "")) for j in doc["jobs"]]
    return sorted(views, key=lambda v: v.start_ms, reverse=True)


def last_exception(base: str, jid: str) -> str:
    """The first line of the newest failure in the job's exception history ('' if none)."""
    doc = _get(base, f"/jobs/{jid}/exceptions")
    try:
        entry = doc["exceptionHistory"]["entries"][0]
    except (TypeError, KeyError, IndexError):
        return ""
    lines = (entry.get("stacktrace") or entry.get("exceptionName") or "").strip().splitlines()
    if not lines:
        return ""
    reason = _short(lines[0])
    tracebacks = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    python = [line.strip() for line in lines[tracebacks[-1]:] if _PYTHON_ERROR.match(line.strip())] if tracebacks else []
    return reason + (f" ({_short(python[0])})" if python else "")


# The error line ending the last Python traceback that a Python worker's failure carries inside the Java one
_PYTHON_ERROR = re.compile(r"^(?!java\.|org\.|Caused by)[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(: |$)")


def _short(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[:limit - 3] + "..."


def last_checkpoint_ms(base: str, jid: str) -> int | None:
    """When the newest completed checkpoint was acknowledged (epoch ms); 0 if none yet."""
    doc = _get(base, f"/jobs/{jid}/checkpoints")
    if not isinstance(doc, dict):
        return None
    completed = (doc.get("latest") or {}).get("completed") or {}
    return int(completed.get("latest_ack_timestamp") or 0)


@dataclass(frozen=True)
class ClusterView:
    taskmanagers: int
    slots_total: int
    slots_free: int
    jobs_running: int


def cluster(base: str) -> ClusterView | None:
    """The cluster's overview: TaskManagers registered, slots, running jobs."""
    doc = _get(base, "/overview")
    if not isinstance(doc, dict) or "taskmanagers" not in doc:
        return None
    return ClusterView(int(doc["taskmanagers"]), int(doc.get("slots-total", 0)), int(doc.get("slots-available", 0)),
                       int(doc.get("jobs-running", 0)))


@dataclass(frozen=True)
class TaskManagerView:
    id: str  # taskmanager.resource-id
    slots_total: int
    slots_free: int


def taskmanagers(base: str) -> list[TaskManagerView] | None:
    doc = _get(base, "/taskmanagers")
    if not isinstance(doc, dict) or "taskmanagers" not in doc:
        return None
    return [TaskManagerView(tm["id"], int(tm.get("slotsNumber", 0)), int(tm.get("freeSlots", 0))) for tm in doc["taskmanagers"]]


def vertex_parallelism(base: str, jid: str) -> list[tuple[str, int]] | None:
    """Each operator chain (vertex) of the job: its name and parallelism (its subtasks)."""
    doc = _get(base, f"/jobs/{jid}")
    if not isinstance(doc, dict) or "vertices" not in doc:
        return None
    return [(v["name"], int(v["parallelism"])) for v in doc["vertices"]]


def cancel(base: str, jid: str) -> None:
    """Ask the cluster to cancel the job (it answers at once; the job is CANCELED shortly after)."""
    try:
        http.client().patch(f"{base}/jobs/{jid}", params={"mode": "cancel"}, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        pass


@dataclass(frozen=True)
class SavepointView:
    status: str  # IN_PROGRESS, COMPLETED
    location: str | None  # the savepoint's URI once completed
    failure: str | None  # why it failed, when it did


def stop_with_savepoint(base: str, jid: str, target: str) -> str:
    """Ask the cluster to stop the job with a savepoint in `target` (drain false: timers and windows stay in the
    savepoint, not fired early); returns the trigger id to poll."""
    answer = http.client().post(f"{base}/jobs/{jid}/stop", json={"targetDirectory": target, "drain": False}, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["request-id"])


def savepoint(base: str, jid: str, trigger: str) -> SavepointView | None:
    """The savepoint's progress (GET /jobs/:jobid/savepoints/:triggerid)."""
    doc = _get(base, f"/jobs/{jid}/savepoints/{trigger}")
    if not isinstance(doc, dict) or "status" not in doc:
        return None
    operation = doc.get("operation") or {}
    cause = operation.get("failure-cause") or {}
    failure = _short(str(cause.get("stack-trace") or cause.get("class") or "")) if cause else None
    return SavepointView(doc["status"]["id"], operation.get("location"), failure)
