"""The services pushpipe runs and the jobs on them: what `up` starts and what the supervisor watches.

Flink comes in one of two modes (Settings.flink_mode): each job its own mini-cluster process (embedded), or a standalone
session cluster with the jobs submitted to it (cluster). A cluster pushpipe started counts as cluster mode, so that
`status`, `down` and the supervisor see it whatever the environment of the command says."""
from __future__ import annotations

from pushpipe.config import Settings
from pushpipe.infra import clusterjobs, flinkcluster
from pushpipe.infra.clickhouse import ClickHouse
from pushpipe.infra.console import Console
from pushpipe.infra.elasticsearch import Elasticsearch
from pushpipe.infra.gateway import Gateway
from pushpipe.infra.ingress import Ingress
from pushpipe.infra.jobs import all_jobs
from pushpipe.infra.kafka import Kafka
from pushpipe.infra.prometheus import Alertmanager, Prometheus, Pushgateway
from pushpipe.infra.schema_registry import SchemaRegistry
from pushpipe.infra.service import Service
from pushpipe.infra.simulators import Simulators


def services() -> list[Service]:
    return [Kafka(), Elasticsearch(), ClickHouse(), Simulators(), SchemaRegistry(), Gateway(), Ingress(), Pushgateway(), Prometheus(), Alertmanager(),
            Console()]  # last: it reads the others


def cluster_mode(settings: Settings) -> bool:
    return settings.flink_mode == "cluster" or flinkcluster.started(settings)


def flink_cluster(settings: Settings) -> list[Service]:
    """The cluster's processes in cluster mode (none embedded)."""
    return list(flinkcluster.processes()) if cluster_mode(settings) else []


def flink_jobs(settings: Settings) -> list[Service]:
    """The three jobs: on the cluster, or each in its own mini-cluster process."""
    return list(clusterjobs.all_jobs()) if cluster_mode(settings) else list(all_jobs())


def supervised(settings: Settings) -> list[Service]:
    """What the supervisor watches (each only while pushpipe runs it: see infra/supervisor.py). Jobs on the cluster have
    no process of their own: Flink restarts them; the supervisor restarts the cluster's processes."""
    return services() + flink_cluster(settings) + flink_jobs(settings)
