"""The services pushpipe runs and the jobs on them: what `up` starts and what the supervisor watches."""
from __future__ import annotations

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


def supervised() -> list[Service]:
    """What the supervisor watches (each only while pushpipe runs it: see infra/supervisor.py)."""
    return services() + list(all_jobs())
