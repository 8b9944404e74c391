"""The liveness beat of a job's Python workers, without services: what a watched call records, and how the
supervisor reads beats (tests/test_supervision.py hangs real workers)."""
from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import pytest

from pushpipe import collector, liveness


@liveness.watched
class Operator:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def process_element(self, value: int, ctx: object):
        self.seen.append(liveness.busy_s(time.monotonic()))
        yield value * 2

    def on_timer(self, timestamp: int, ctx: object) -> None:  # returns nothing: still a watched call
        self.seen.append(liveness.busy_s(time.monotonic()))


def test_a_watched_call_is_busy_while_it_runs_and_not_after() -> None:
    op = Operator()
    assert list(op.process_element(21, None)) == [42]
    assert list(op.on_timer(1, None) or []) == []
    assert len(op.seen) == 2 and all(0 <= s < 1 for s in op.seen)
    assert liveness.busy_s(time.monotonic() + 100) == 0, "nothing is in progress afterwards"


@liveness.watched
class Opened:
    def open(self, runtime_context: object) -> None:
        self.thresholds = gc.get_threshold()


def test_in_a_job_worker_open_sets_the_collector_for_streams_once(monkeypatch: pytest.MonkeyPatch) -> None:
    before = gc.get_threshold()
    try:
        monkeypatch.delenv("PUSHPIPE_JOB", raising=False)
        Opened().open(None)
        assert gc.get_threshold() == before, "outside a job's worker the collector is left alone"
        monkeypatch.setenv("PUSHPIPE_JOB", "fanout")
        opened = Opened()
        opened.open(None)
        assert opened.thresholds == collector.THRESHOLDS != before, "set before the operator's own open runs"
        frozen = gc.get_freeze_count()
        assert frozen > 0, "what existed at the first open is frozen"
        Opened().open(None)
        assert gc.get_freeze_count() == frozen, "a later open changes nothing"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def beat(directory: Path, pid: int, age_s: float, busy_s: float, interpreter: str = "a") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}-{interpreter}.json"
    path.write_text(json.dumps({"at": int((time.time() - age_s) * 1000), "busy_ms": int(busy_s * 1000)}))
    return path


def test_a_frozen_or_stuck_live_worker_is_named_and_beats_of_gone_workers_are_dropped(tmp_path: Path) -> None:
    directory = liveness.liveness_dir(tmp_path, "dispatch")
    beat(directory, os.getpid(), 0.5, 2)
    assert liveness.stuck(tmp_path, "dispatch", lambda pid: True) is None
    gone = beat(directory, 999_999, 100, 100)
    assert liveness.stuck(tmp_path, "dispatch", lambda pid: pid == os.getpid()) is None
    assert not gone.exists(), "a gone worker's beat is removed"
    beat(directory, os.getpid(), 0.5, liveness.STUCK_S + 1)
    assert "has been running for" in liveness.stuck(tmp_path, "dispatch", lambda pid: True)
    beat(directory, os.getpid(), liveness.FROZEN_S + 1, 0)
    assert "frozen" in liveness.stuck(tmp_path, "dispatch", lambda pid: True)


def test_each_interpreter_of_a_process_beats_apart(tmp_path: Path) -> None:
    """Thread mode: one interpreter per operator in the JVM; one of them stuck is enough, one closed is not frozen."""
    directory = liveness.liveness_dir(tmp_path, "fanout")
    beat(directory, os.getpid(), 0.5, 0, "idle")
    beat(directory, os.getpid(), 0.5, liveness.STUCK_S + 1, "stuck")
    assert "has been running for" in liveness.stuck(tmp_path, "fanout", lambda pid: True)
    beat(directory, os.getpid(), 0.5, 0, "stuck")
    closed = beat(directory, os.getpid(), liveness.FROZEN_S + 5, 0, "closed")
    assert liveness.stuck(tmp_path, "fanout", lambda pid: True) is None and not closed.exists()
