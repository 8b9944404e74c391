"""A home of its own for a Flink cluster test: three Kafka brokers, the standalone cluster and some jobs on it, on ports
of their own, beside the stack whose vendor simulators (and schema registry) they share. Used by the cluster tests'
module fixtures (tests/test_flink_cluster.py, tests/test_cluster_upgrade.py)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pushpipe.config import Settings
from pushpipe.connectors.config import write_simulator_vendors
from pushpipe.infra import flinkcluster, stack
from pushpipe.infra.clusterjobs import ClusterJob
from pushpipe.infra.kafka import Kafka, ensure_topics
from pushpipe.infra.simulators import state_dir
from pushpipe.jobs import dispatch_policy


def home_settings(shared: Settings, home: Path, **ports: Any) -> Settings:
    """Cluster-mode settings in `home` (ports given by the caller), using `shared`'s simulators and gateway."""
    (home / "cache").symlink_to(shared.cache_dir)  # jars, the cluster's Python, the wheel cache: made once
    return Settings(home=home, flink_mode="cluster", kafka_brokers=3, simulator_url=shared.simulator_url,
                    gateway_url=shared.gateway_url, **ports)


def write_home(settings: Settings, shared: Settings, rates: dict[str, int]) -> None:
    """The files the jobs read: the receipt key and vendors of `shared`'s simulators, the dispatch policy with `rates`
    added (e.g. {"limited-*/apns": 100}), the example templates."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.receipt_key_file.write_bytes(shared.receipt_key_file.read_bytes())
    write_simulator_vendors(state_dir(shared), settings.vendors_file)
    policy = {**dispatch_policy.EMBEDDED, "rates": {**dispatch_policy.EMBEDDED["rates"], **rates}}
    settings.dispatch_file.write_text(json.dumps(policy))
    stack.write_example_templates(settings.templates_file)


@contextmanager
def running_cluster(settings: Settings, jobs: tuple[str, ...]) -> Iterator[Settings]:
    """Kafka x3, the cluster and `jobs` on it; everything stopped (jobs cancelled) on the way out."""
    kafka, cluster_jobs = Kafka(), [ClusterJob(job) for job in jobs]
    try:
        kafka.start(settings)
        ensure_topics(settings)
        stack.start_cluster(settings)
        for job in cluster_jobs:
            job.install(settings)
            job.launch(settings)  # both submitted before either is waited for: they start side by side
        for job in cluster_jobs:
            job.wait_ready(settings)
        yield settings
    finally:
        for job in cluster_jobs:
            job.stop(settings)
        for process in reversed(flinkcluster.processes()):
            process.stop(settings)
        kafka.stop(settings)
