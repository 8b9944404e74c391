"""Loopback means loopback, and each stack logs under its own home: through the real stack.

Every process `pushpipe up` started (pid files under run_dir, and everything below them: the job
JVMs, the dispatch Python worker, Elasticsearch's JVM) listens on loopback only, and every Flink JVM
writes its log under PUSHPIPE_HOME, never into the installed pyflink package shared by all stacks. Each job
JVM also runs with infra/jobs.py's options (C1 only: README, design decisions)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import proc_sockets as sockets
from pushpipe.config import Settings
from pushpipe.infra import beamloopback, process
from pushpipe.infra.jobs import JVM_ARGS, all_jobs

pytestmark = pytest.mark.stack


def stack_pids(settings: Settings) -> dict[int, str]:
    """pid -> component folder, for every process of the stack."""
    pids = {}
    for pid_file in settings.run_dir.glob("*/*.pid"):
        leader = process.read_pid(settings, pid_file.stem)
        if leader is not None:
            pids.update(dict.fromkeys([leader, *process.descendants(leader)], pid_file.stem))
    return pids


def test_every_listening_socket_of_the_stack_is_on_loopback(pipeline: Settings) -> None:
    pids = stack_pids(pipeline)
    assert {f"job-{j}" for j in ("fanout", "dispatch", "analytics")} <= set(pids.values())
    listening = [(name, pid, address, port) for pid, name in pids.items() for address, port in sockets.listening(pid)]
    assert len(listening) > 10, listening
    open_wide = [entry for entry in listening if not sockets.is_loopback(entry[2])]
    assert not open_wide, f"listening beyond loopback (component, pid, address, port): {open_wide}"


def pyflink_logs() -> dict[str, tuple[int, float]]:
    log_dir = beamloopback.pyflink_home() / "log"
    return {p.name: (p.stat().st_size, p.stat().st_mtime) for p in log_dir.iterdir() if p.is_file()}


def job_arguments(settings: Settings) -> dict[str, list[str]]:
    """Each job's name -> its Flink JVM's command line."""
    arguments = {}
    for job in all_jobs():
        jvm = job.jvm(settings)
        assert jvm, f"{job.name}: no Flink JVM"
        arguments[job.name] = process.cmdline(jvm).split()
    return arguments


def test_each_job_logs_under_its_own_home(pipeline: Settings) -> None:
    before = pyflink_logs()
    for name, arguments in job_arguments(pipeline).items():
        log_file = Path(next(a for a in arguments if a.startswith("-Dlog.file=")).split("=", 1)[1])
        assert log_file.is_relative_to(pipeline.home), f"{name} logs to {log_file}"
        assert log_file.stat().st_size > 0
    time.sleep(12)  # two checkpoints of every job: each JVM logs something
    assert pyflink_logs() == before, "a job wrote into the pyflink package's log dir"


def test_each_job_jvm_compiles_with_c1_only(pipeline: Settings) -> None:
    for name, arguments in job_arguments(pipeline).items():
        assert JVM_ARGS == "-XX:TieredStopAtLevel=1" and JVM_ARGS in arguments, f"{name}: {arguments[:8]}"
