"""The embedded jobs' JVMs run with the options infra/jobs.py gives them: C1 only (README, design decisions),
through the real stack."""
from __future__ import annotations

import pytest

from pushpipe.config import Settings
from pushpipe.infra import process
from pushpipe.infra.jobs import JVM_ARGS, all_jobs

pytestmark = pytest.mark.stack


def test_each_job_jvm_compiles_with_c1_only(pipeline: Settings) -> None:
    for job in all_jobs():
        jvm = job.jvm(pipeline)
        assert jvm, f"{job.name}: no Flink JVM"
        arguments = process.cmdline(jvm).split()
        assert JVM_ARGS == "-XX:TieredStopAtLevel=1" and JVM_ARGS in arguments, f"{job.name}: {arguments[:8]}"
