"""The Flink side restarted with other settings, the rest of the stack left up: what benchmarks that compare two ways
of running the jobs (metrics on or off, embedded or on the cluster) do between their rounds."""
from __future__ import annotations

import os

from pushpipe.config import Settings, load
from pushpipe.infra import stack
from pushpipe.infra.components import flink_cluster, flink_jobs
from pushpipe.infra.supervisor import Supervisor


def restart_jobs(**environ: str) -> Settings:
    """Stop the supervisor, the jobs and any Flink cluster; set `environ` (PUSHPIPE_* variables); start them again.
    Exits when the stack is not healthy afterwards."""
    settings = load()
    for component in [Supervisor(), *reversed(flink_cluster(settings) + flink_jobs(settings))]:
        component.stop(settings)
    os.environ.update(environ)
    settings = load()
    problems = stack.up(settings)
    if problems:
        raise SystemExit(f"the stack with {environ} is not healthy: {problems}")
    return settings
