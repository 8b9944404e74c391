"""The Flink standalone session cluster for real (issue 17): a JobManager and two TaskManagers started from pyflink/bin,
fan-out and dispatch sent with `flink run` at parallelism 2, RUNNING with 2 subtasks per operator on the cluster, over
three Kafka brokers; records flow through both jobs to the vendor simulator, and the two dispatch subtasks together
keep an (app, vendor)'s configured rate.

It runs beside the test stack without touching it: a home of its own (its Kafka and cluster on ports of their own,
its own topics' offsets and job state); only the vendor simulators and the schema registry are the stack's."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import clusterhome
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra import flinkcluster, flinkrest, http
from pushpipe.infra.clusterjobs import ClusterJob, answer
from pushpipe.infra.kafka import Kafka
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, now_ms, push_request
from test_fanout_e2e import lane_records
from test_isolation_e2e import registered

pytestmark = [pytest.mark.stack, pytest.mark.beside_stack]
JOBS = ("fanout", "dispatch")
LIMITED_RATE = 100  # APNs sends per second of the app `limited-*`


@pytest.fixture(scope="module")
def cluster(simulators: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three Kafka brokers, the cluster, fan-out and dispatch on it (flink_mode cluster), in a home of their own."""
    settings = clusterhome.home_settings(simulators, tmp_path_factory.mktemp("cluster-home"), flink_cluster_rest_port=28084,
                                         kafka_bootstrap="127.0.0.1:29892", dispatch_metrics_port=28250)
    clusterhome.write_home(settings, simulators, {"limited-*/apns": LIMITED_RATE})
    with clusterhome.running_cluster(settings, JOBS):
        yield settings


@pytest.mark.parametrize("name", JOBS)
def test_the_cluster_runs_each_job_at_parallelism_2_on_both_taskmanagers(cluster: Settings, name: str) -> None:
    """Each REST question is asked again until answered: on a loaded machine one can outlast the client's 2 s (CI once)."""
    base = flinkcluster.rest_url(cluster)
    taskmanagers = answer(lambda: flinkrest.taskmanagers(base), "its TaskManagers")
    assert sorted(tm.id for tm in taskmanagers) == ["flink-taskmanager-1", "flink-taskmanager-2"]
    job = ClusterJob(name)
    job.wait_ready(cluster)
    jid = job.jid(cluster)
    assert jid is not None
    vertices = answer(lambda: flinkrest.vertex_parallelism(base, jid), f"{name}'s operators")
    assert vertices and {p for _, p in vertices} == {2}, vertices
    view = answer(lambda: job.view(cluster), f"{name}'s tasks")
    assert view.name == name and view.tasks_running == view.tasks_total == 2 * len(vertices)
    assert Kafka().health(cluster).detail.startswith("3 broker(s)")


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


def test_two_dispatch_subtasks_together_keep_the_apps_rate(cluster: Settings, admin: SimulatorAdmin) -> None:
    """600 single-pin APNs pushes of an app limited to 100/s: each subtask takes half the rate, so the simulator
    takes them over at least 5 s (one second's burst, then 100/s); two subtasks at the full rate each took 2 s."""
    run, pins = uuid.uuid4().hex[:8], 600
    app = f"limited-{run}"
    producer = PushProducer(cluster)
    tokens = [f"{run}{u:05x}".ljust(64, "a") for u in range(pins)]
    registered(producer, cluster, *(device_event(app, f"u{u}", token) for u, token in enumerate(tokens)))
    for u in range(pins):
        producer.request(push_request(app, [f"u{u}"], "t", f"b{u}", category="transactional"))
    producer.flush()
    done = observe.wait_for(lambda: (got := admin.accepted(run, tokens=False))["count"] >= pins and got, 120,
                            f"{pins} pushes of {app} accepted by the APNs simulator")
    seconds = done["last_at"] - done["first_at"]  # the simulator's clock: seconds
    least = (pins - LIMITED_RATE) / LIMITED_RATE
    assert done["count"] == pins and seconds >= 0.9 * least, (done["count"], seconds)
    assert all(n > 0 for n in apns_tokens_by_subtask(cluster)), "both subtasks sent, each within its share"


def apns_tokens_by_subtask(settings: Settings) -> list[float]:
    """APNs tokens each dispatch subtask has sent, from its own metrics port (dispatch_metrics_port + its index)."""
    sent = []
    for index in range(settings.parallelism("dispatch")):
        text = http.client().get(f"http://127.0.0.1:{settings.dispatch_metrics_port + index}/metrics", timeout=10).text
        sent.append(sum(sample.value for family in text_string_to_metric_families(text) if family.name == "pushpipe_dispatch_tokens"
                        for sample in family.samples if sample.name.endswith("_total") and sample.labels.get("vendor") == "apns"))
    return sent
