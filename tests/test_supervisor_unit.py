"""`pushpipe up` never says "up" while something is down, restarts are counted, the supervisor waits out
each problem's grace: the logic, without services."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from pushpipe import cli
from pushpipe.infra import flinkrest, jobs, process, restarts, stack
from pushpipe.infra.service import Health


def test_not_up_names_each_unhealthy_component_and_why() -> None:
    healths = [("kafka", Health(True, "1 broker(s)")), ("job-dispatch", Health(False, "RESTARTING: java.lang.RuntimeException: boom")),
               ("supervisor", Health(False, ""))]
    assert stack.not_up(healths) == ["job-dispatch: RESTARTING: java.lang.RuntimeException: boom", "supervisor: DOWN"]
    assert stack.not_up([("kafka", Health(True))]) == []


def test_up_exits_non_zero_naming_the_component(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stack, "up", lambda settings, with_jobs: ["job-dispatch: RESTARTING: boom"])
    monkeypatch.setattr(cli, "show_status", lambda settings: None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up"])
    assert exit_.value.code == 1
    assert "not healthy: job-dispatch: RESTARTING: boom" in capsys.readouterr().err


def test_up_exits_zero_when_all_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[bool] = []
    monkeypatch.setattr(stack, "up", lambda settings, with_jobs: started.append(with_jobs) or [])
    monkeypatch.setattr(cli, "show_status", lambda settings: None)
    cli.main(["up"])
    cli.main(["up", "--services-only"])
    assert started == [True, False]


def test_restarts_are_counted_with_the_last_reason(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    from pushpipe.config import load

    settings = load()
    assert restarts.describe(restarts.load(settings).get("job-dispatch")) == "0"
    restarts.record(settings, "job-dispatch", "process died")
    entry = restarts.record(settings, "job-dispatch", "Python worker gone (0 of 1 running)")
    assert entry["count"] == 2 and restarts.load(settings)["job-dispatch"]["reason"].startswith("Python worker gone")
    assert restarts.describe(entry).startswith("2 (last ") and "Python worker gone" in restarts.describe(entry)


def test_a_problem_is_acted_on_once_one_kind_of_it_has_lasted_its_grace() -> None:
    from pushpipe.infra.service import Problem
    from pushpipe.infra.supervisor import Watch, due

    watch = Watch()
    assert not due(watch, Problem("worker", "Python worker gone", 8.0), now=100.0)
    assert not due(watch, Problem("worker", "Python worker gone", 8.0), now=107.0)
    assert not due(watch, Problem("state", "job RESTARTING", 45.0), now=109.0), "another kind starts its own clock"
    assert due(watch, Problem("state", "job RESTARTING", 45.0), now=154.0)
    assert not due(watch, None, now=155.0) and watch.kind is None
    assert due(watch, Problem("died", "process died", 0.0), now=156.0)
    watch.not_before = 200.0  # backing off after failed restarts
    assert not due(watch, Problem("died", "process died", 0.0), now=199.0)


def test_descendants_are_children_and_grandchildren_from_proc() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(process.descendants(shell.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        found = process.descendants(shell.pid)
        assert len(found) == 2 and all("sleep" in process.cmdline(pid) for pid in found)
        assert shell.pid in process.descendants(os.getpid()), "a child of this process"
        assert set(found) <= set(process.descendants(os.getpid())), "and its children in turn"
    finally:
        for pid in process.descendants(shell.pid):
            os.kill(pid, signal.SIGKILL)
        shell.wait()


def test_a_jobs_checkpoint_is_read_once_per_period_and_each_job_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    monkeypatch.setattr(flinkrest, "last_checkpoint_ms", lambda base, jid: reads.append(jid) or 1000 * len(reads))
    clock = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(jobs, "_acks", {})
    assert jobs.latest_ack("http://rest", "a") == 1000
    clock[0] += jobs.CHECKPOINT_READ_S - 1
    assert jobs.latest_ack("http://rest", "a") == 1000, "within the period: the ack read before"
    assert jobs.latest_ack("http://rest", "b") == 2000, "another job (a restarted one has a new id) is read at once"
    clock[0] += 1
    assert jobs.latest_ack("http://rest", "a") == 3000
    assert reads == ["a", "b", "a"]
