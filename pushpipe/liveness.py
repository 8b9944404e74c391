"""Liveness of a job's Python workers, for the supervisor: is an operator call stuck, is a worker frozen.

Every operator class is decorated with `watched`: each call of its process_element or on_timer notes, per
thread, when it began (and its open() first sets the worker's garbage collector for streams, once: collector.py).
A daemon thread of the worker writes, every BEAT_S, run_dir/job-<job>/liveness/<pid>-<interpreter>.json =
{"at": wall ms, "busy_ms": the longest call in progress, in ms, "collector": the garbage collector's thresholds}.
The supervisor (infra/jobs.py, through `stuck`) restarts the job when a live worker's file is older than FROZEN_S
(no Python runs in it) or a call has been busy for longer than STUCK_S (an operator hangs): Flink itself notices
neither for minutes.

Failpoints, for tests: while run_dir/failpoints.json holds {"hang": "<job>/<OperatorClass>"}, the next call of
that operator hangs for good (the fault the supervisor must catch); with {"fail": "<job>/<OperatorClass>"} its
calls raise (Flink fails the task over). Without the file nothing is checked but its absence, once a second.
"""
from __future__ import annotations

import functools
import gc
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pushpipe import collector

BEAT_S = 1.0
FROZEN_S = 10.0  # no beat for this long: the worker runs no Python (GIL held by native code, a stopped thread)
STUCK_S = 15.0  # one call busy for this long: far beyond any element's work (a 31,000-device shard takes ~2 s)
WATCHED = ("process_element", "on_timer")
FAILPOINTS_READ_S = 1.0  # how often a worker looks for the failpoints file

T = TypeVar("T")
log = logging.getLogger("pushpipe.liveness")
_busy: dict[int, list[float]] = {}  # thread ident -> [calls in progress (nested: chained operators), since]
_started = threading.Lock()
_watchdog: threading.Thread | None = None
_failpoints: dict[str, Any] = {"checked": 0.0, "hang": None, "fail": None, "file": None}  # file: set when the watchdog starts


def liveness_dir(run_dir: Path, job: str) -> Path:
    return run_dir / f"job-{job}" / "liveness"


def failpoints_file(run_dir: Path) -> Path:
    return run_dir / "failpoints.json"


def watched(cls: type[T]) -> type[T]:
    """Class decorator: the operator's calls are timed for the watchdog (and can hang at a failpoint)."""
    for name in WATCHED:
        method = cls.__dict__.get(name)
        if method is not None:
            setattr(cls, name, _timed(method, f"{cls.__name__}"))
    if hasattr(cls, "open"):
        cls.open = _tuning(cls.open)  # type: ignore[attr-defined]
    return cls


def _tuning(open_: Callable[..., None]) -> Callable[..., None]:
    """open(), in a job's worker (where PUSHPIPE_JOB is set) after the collector is set for streams."""
    @functools.wraps(open_)
    def call(self: Any, *args: Any) -> None:
        if _in_job_worker():
            collector.tune_for_streams()
        open_(self, *args)

    return call


def _timed(method: Callable[..., Any], operator: str) -> Callable[..., Iterator[Any]]:
    @functools.wraps(method)
    def call(self: Any, *args: Any) -> Iterator[Any]:
        entry = _enter(operator)
        try:
            result = method(self, *args)
            if result is not None:
                yield from result
        finally:
            entry[0] -= 1

    return call


def _enter(operator: str) -> list[float]:
    _start_watchdog()
    wanted = _failpoint(operator)
    if wanted == "fail":
        raise FailpointError(f"failpoint: {operator} fails")
    entry = _busy.setdefault(threading.get_ident(), [0, 0.0])
    if not entry[0]:
        entry[1] = time.monotonic()
    entry[0] += 1
    if wanted == "hang":
        threading.Event().wait()  # the failpoint: this call never ends, busy all along
    return entry


def busy_s(now: float) -> float:
    """The longest time any thread has been inside a watched call."""
    return max((now - since for depth, since in list(_busy.values()) if depth), default=0.0)


class FailpointError(RuntimeError):
    """What an operator call raises at a "fail" failpoint."""


def _failpoint(operator: str) -> str | None:
    """"hang" or "fail" when the failpoints file names this job's operator for it, else None."""
    now = time.monotonic()
    if now - _failpoints["checked"] >= FAILPOINTS_READ_S:
        _failpoints["checked"] = now
        read = _read_failpoints()
        _failpoints["hang"], _failpoints["fail"] = read.get("hang"), read.get("fail")
    name = f"{os.environ.get('PUSHPIPE_JOB', '')}/{operator}"
    return next((kind for kind in ("hang", "fail") if _failpoints[kind] == name), None)


def _read_failpoints() -> dict[str, Any]:
    if _failpoints["file"] is None:
        return {}
    try:
        return json.loads(_failpoints["file"].read_text())
    except (OSError, ValueError):
        return {}


def _in_job_worker() -> bool:
    """A job's Python worker (its JVM sets PUSHPIPE_JOB), not a test or a tool importing the operators."""
    return bool(os.environ.get("PUSHPIPE_JOB"))


def _start_watchdog() -> None:
    global _watchdog
    if _watchdog is not None or not _in_job_worker():
        return
    with _started:
        if _watchdog is None:
            from pushpipe.config import load

            run_dir = load().run_dir
            _failpoints["file"] = failpoints_file(run_dir)
            directory = liveness_dir(run_dir, os.environ["PUSHPIPE_JOB"])
            _watchdog = threading.Thread(target=_beat, args=(directory,), name="pushpipe-liveness", daemon=True)
            _watchdog.start()


def stuck(run_dir: Path, job: str, alive: Callable[[int], bool]) -> str | None:
    """Why one of the job's live workers is frozen or stuck, from their beats, or None.

    A worker process may hold several Python interpreters (thread mode: one per operator), each beating in a
    file of its own, "<pid>-<interpreter>.json": a process is frozen when none of its files has beaten for
    FROZEN_S, and a silent file beside beating ones (an interpreter closed by a failover) is dropped. Beats of
    processes that are gone are removed."""
    now_ms = time.time() * 1000
    directory = liveness_dir(run_dir, job)
    beats: dict[int, list[tuple[Path, float, float]]] = {}
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        pid = int(path.stem.split("-")[0])
        if not alive(pid):
            path.unlink(missing_ok=True)
            continue
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced
        beats.setdefault(pid, []).append((path, (now_ms - beat["at"]) / 1000, beat["busy_ms"] / 1000))
    for pid, found in beats.items():
        if all(silent_s > FROZEN_S for _, silent_s, _ in found):
            return f"Python worker {pid} frozen: no liveness beat for {min(s for _, s, _ in found):.0f}s"
        for path, silent_s, busy in found:
            if silent_s > FROZEN_S:
                path.unlink(missing_ok=True)
            elif busy > STUCK_S:
                return f"an operator call in Python worker {pid} has been running for {busy:.0f}s"
    return None


def _beat(directory: Path) -> None:
    path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"  # this interpreter's
    while True:
        beat = {"at": int(time.time() * 1000), "busy_ms": int(busy_s(time.monotonic()) * 1000), "collector": gc.get_threshold()}
        try:
            directory.mkdir(parents=True, exist_ok=True)  # again: a restart of the job clears the directory
            partial = path.with_suffix(".part")
            partial.write_text(json.dumps(beat))
            partial.replace(path)
        except OSError as bad:  # a full disk: the beat goes silent, and the supervisor sees a frozen worker
            log.warning("liveness beat not written: %s", bad)
        time.sleep(BEAT_S)
