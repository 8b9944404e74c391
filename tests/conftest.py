"""Session fixtures: the real stack, started once per test run through the project's own infra/."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer

from pushpipe.config import Settings, load
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin, Simulators
from pushpipe.producer import PushProducer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the vendor simulator are marked `simulator`: `make unit` leaves them out, so it starts no
    service and never wipes the records of a simulator that a running stack's tests are reading.

    Tests marked `beside_stack` start services of their own beside the stack (a Flink cluster, more Kafka brokers):
    they run last, so that their load on the machine does not fall on the stack's timing checks."""
    for item in items:
        if "simulators" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.simulator)
    items.sort(key=lambda item: item.get_closest_marker("beside_stack") is not None)  # stable: the order otherwise kept


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Settings:
    """Kafka, Elasticsearch, ClickHouse, the simulators and the three Flink jobs, all running."""
    stack.up(settings)
    return settings


@pytest.fixture(scope="session")
def simulators(settings: Settings) -> Iterator[Settings]:
    """The real vendor simulator process on the configured ports; stopped at the end if this run started it.

    Its record of what it accepted starts empty, so a run after another one counts only its own tokens.
    """
    service = Simulators()
    already_up = service.health(settings).ok
    service.start(settings)
    SimulatorAdmin(settings.simulator_admin_url).reset()
    yield settings
    if not already_up:
        service.stop(settings)


@pytest.fixture
def simulator_admin(simulators: Settings) -> Iterator[SimulatorAdmin]:
    """The simulator process's admin API, its faults cleared before and after the test (its records kept);
    the contract tests take it as their `admin`."""
    admin = SimulatorAdmin(simulators.simulator_admin_url)
    admin.reset(records=False)
    yield admin
    admin.reset(records=False)


@pytest.fixture
def admin(pipeline: Settings) -> SimulatorAdmin:
    """The stack's simulator admin API (contract and dispatch tests override it with their own resets)."""
    return SimulatorAdmin(pipeline.simulator_admin_url)


@pytest.fixture
def run_id() -> str:
    """A unique prefix for this test's apps, pins and tokens."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def producer(pipeline: Settings) -> Iterator[PushProducer]:
    p = PushProducer(pipeline)
    yield p
    p.flush()


@pytest.fixture
def dlq_consumer(pipeline: Settings) -> Iterator[Consumer]:
    consumer = Consumer({
        "bootstrap.servers": pipeline.kafka_bootstrap,
        "group.id": f"test-dlq-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([pipeline.topics.dlq])
    yield consumer
    consumer.close()
