"""The Flink standalone session cluster for real (issue 17): a JobManager and two TaskManagers started from pyflink/bin,
the fan-out job sent with `flink run` at parallelism 2, RUNNING with 2 subtasks per operator on the cluster, and
records flowing through it from Kafka to the dispatch lanes.

It starts only what it needs (Kafka, the cluster, one job) through the project's own infra/, on the configured ports,
and stops what it started. Run it with a PUSHPIPE_HOME and ports of its own beside another stack."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import flinkcluster, flinkrest, stack
from pushpipe.infra.clusterjobs import ClusterJob
from pushpipe.infra.kafka import Kafka, ensure_topics
from pushpipe.jobs import dispatch_policy
from pushpipe.producer import PushProducer, device_event, now_ms, push_request
from test_fanout_e2e import lane_records
from test_isolation_e2e import registered

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def cluster() -> Iterator[Settings]:
    """Kafka, the cluster and the fan-out job on it (flink_mode cluster)."""
    settings = load(flink_mode="cluster")
    kafka, job = Kafka(), ClusterJob("fanout")
    kafka_was_up, cluster_was_up = kafka.health(settings).ok, flinkcluster.started(settings)
    kafka.install(settings)
    kafka.start(settings)
    ensure_topics(settings)
    dispatch_policy.write_embedded(settings.dispatch_file)
    stack.write_example_templates(settings.templates_file)
    stack.start_cluster(settings)
    job.install(settings)
    job.start(settings)
    yield settings
    job.stop(settings)
    if not cluster_was_up:
        for process in reversed(flinkcluster.processes()):
            process.stop(settings)
    if not kafka_was_up:
        kafka.stop(settings)


def test_the_cluster_runs_the_job_at_parallelism_2_on_both_taskmanagers(cluster: Settings) -> None:
    base = flinkcluster.rest_url(cluster)
    assert sorted(tm.id for tm in flinkrest.taskmanagers(base) or []) == ["flink-taskmanager-1", "flink-taskmanager-2"]
    job = ClusterJob("fanout")
    assert job.health(cluster).ok, job.health(cluster).detail
    jid = job.jid(cluster)
    assert jid is not None
    vertices = flinkrest.vertex_parallelism(base, jid) or []
    assert vertices and {p for _, p in vertices} == {2}, vertices
    view = job.view(cluster)
    assert view is not None and view.name == "fanout" and view.tasks_running == view.tasks_total == 2 * len(vertices)


def test_records_flow_through_the_job_on_the_cluster(cluster: Settings) -> None:
    run, pins = uuid.uuid4().hex[:8], 10
    app = f"cluster-{run}"
    producer = PushProducer(cluster)
    registered(producer, cluster, *(device_event(app, f"u{u}", f"{run}{u:04x}".ljust(64, "c")) for u in range(pins)))
    since = now_ms()
    for u in range(pins):
        producer.request(push_request(app, [f"u{u}"], "t", f"b{u}"))
    producer.flush()
    records = observe.wait_for(lambda: (found := lane_records(cluster, since, app)) and sum(map(len, found)) >= pins and found, 90,
                               f"{pins} batches of {app} on the normal lane")
    assert sum(len(batches) for batches in records) == pins
