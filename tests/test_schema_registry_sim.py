"""The schema registry simulator (simulators/schema_registry.py) as confluent-kafka's own clients use it: its
SchemaRegistryClient, AvroSerializer and AvroDeserializer, pushpipe's reader of Confluent's framing and `pushpipe schemas
register`; compatibility judged for real; Confluent's error codes; ids kept across a restart. The simulator runs as its
own process on a free port with its state in a temporary folder (it touches no running stack)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from typer.testing import CliRunner

from pushpipe import cli
from pushpipe.config import ENV_PREFIX, Topics, load
from pushpipe.infra.schema_registry import SchemaRegistry, state_file
from pushpipe.producer import push_request
from pushpipe.schemas import codec, registry
from pushpipe.simulators.schema_registry import MEDIA_TYPE

pytestmark = pytest.mark.simulator
V1 = {"type": "record", "name": "Order", "namespace": "test", "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(state: Path, port: int) -> Iterator[str]:
    """The simulator process on `port` with its state in `state`, until the block ends; yields its URL."""
    log = state.with_suffix(".log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "pushpipe.simulators.schema_registry", "--state", str(state), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):
            assert proc.poll() is None and time.monotonic() < deadline, f"the simulator did not start: {state.with_suffix('.log').read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _answers(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=1).json()["ok"])
    except (httpx.HTTPError, ValueError):
        return False


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(tmp_path_factory.mktemp("registry") / "registry.json", free_port()) as where:
        yield where


@pytest.fixture
def client(url: str) -> SchemaRegistryClient:
    """A fresh client (confluent-kafka's clients cache what they registered and fetched)."""
    return SchemaRegistryClient({"url": url})


@pytest.fixture
def subject() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}-value"


def avro(doc: dict) -> Schema:
    return Schema(json.dumps(doc), "AVRO")


def with_fields(*fields: dict, drop: str = "") -> dict:
    return {**V1, "fields": [f for f in V1["fields"] if f["name"] != drop] + list(fields)}


def refusal(call) -> tuple[int, int]:
    with pytest.raises(SchemaRegistryError) as refused:
        call()
    return refused.value.http_status_code, refused.value.error_code


def test_a_schema_has_one_global_id_and_registering_it_again_changes_nothing(url: str, client: SchemaRegistryClient, subject: str) -> None:
    schema_id = client.register_schema(subject, avro(V1))
    assert SchemaRegistryClient({"url": url}).register_schema(subject, avro(V1)) == schema_id  # asks the registry, not a cache
    other = f"other-{subject}"
    assert client.register_schema(other, avro(V1)) == schema_id  # the same schema under another subject: the same id
    assert client.get_versions(subject) == [1] and client.get_versions(other) == [1]
    assert {subject, other} <= set(client.get_subjects())
    assert json.loads(client.get_schema(schema_id).schema_str) == V1
    found = client.lookup_schema(subject, avro(V1))
    assert (found.schema_id, found.version, found.subject) == (schema_id, 1, subject)
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version, json.loads(latest.schema.schema_str)) == (schema_id, 1, V1)
    assert client.get_version(subject, 1).schema_id == schema_id


def test_the_avro_serializer_and_deserializer_and_pushpipes_reader_work_through_it(url: str, client: SchemaRegistryClient,
                                                                                   monkeypatch) -> None:
    topic = f"push.requests.{uuid.uuid4().hex[:8]}"
    request = push_request("app", ["u1"], "Order shipped", "Arriving today")
    framed = AvroSerializer(client, codec.schema_text("PushRequest"))(request, SerializationContext(topic, MessageField.VALUE))
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == client.get_latest_version(f"{topic}-value").schema_id
    fresh = SchemaRegistryClient({"url": url})
    assert AvroDeserializer(fresh)(framed, SerializationContext(topic, MessageField.VALUE)) == request
    monkeypatch.setenv(registry.URL_ENV, url)  # as the jobs' Python workers get it
    registry.forget()
    try:
        assert codec.decode("PushRequest", framed) == request
    finally:
        registry.forget()


def test_backward_takes_an_added_field_with_a_default(client: SchemaRegistryClient, subject: str) -> None:
    first = client.register_schema(subject, avro(V1))
    added = avro(with_fields({"name": "note", "type": ["null", "string"], "default": None}))
    assert client.test_compatibility(subject, added) is True
    second = client.register_schema(subject, added)
    assert second != first and client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == second
    assert client.register_schema(subject, added) == second and client.get_versions(subject) == [1, 2]
    assert client.get_compatibility() == "BACKWARD"


def test_backward_refuses_a_required_field_or_a_changed_type_with_409(client: SchemaRegistryClient, subject: str) -> None:
    client.register_schema(subject, avro(V1))
    required = avro(with_fields({"name": "note", "type": "string"}))
    assert client.test_compatibility(subject, required) is False
    assert refusal(lambda: client.register_schema(subject, required)) == (409, 409)
    with pytest.raises(SchemaRegistryError, match=r"incompatible with an earlier schema .*READER_FIELD_MISSING_DEFAULT_VALUE: note"):
        client.register_schema(subject, required)
    retyped = avro({**V1, "fields": [V1["fields"][0], {"name": "qty", "type": "string"}]})
    assert refusal(lambda: client.register_schema(subject, retyped)) == (409, 409)
    assert client.get_versions(subject) == [1]


def test_a_removed_field_passes_backward_but_not_full(client: SchemaRegistryClient, subject: str) -> None:
    """BACKWARD: the new schema reads old data (it ignores the removed field); FULL: old readers need it too (no default)."""
    client.register_schema(subject, avro(V1))
    removed = avro(with_fields(drop="qty"))
    assert client.test_compatibility(subject, removed) is True
    # confluent-kafka 2.16.1 returns the answer's body, not only the level its annotation promises
    assert client.set_compatibility(subject, "FULL") == {"compatibility": "FULL"} and client.get_compatibility(subject) == "FULL"
    assert client.test_compatibility(subject, removed) is False
    assert refusal(lambda: client.register_schema(subject, removed)) == (409, 409)
    client.set_compatibility(subject, "NONE")
    assert client.register_schema(subject, removed) > 0 and client.get_versions(subject) == [1, 2]


def test_transitive_levels_look_at_every_version(client: SchemaRegistryClient, subject: str) -> None:
    """v2 drops qty, v3 brings it back without a default: BACKWARD looks at v2 only and takes it, BACKWARD_TRANSITIVE also
    at v1, whose qty was an int, and refuses a string qty."""
    client.register_schema(subject, avro(V1))
    client.register_schema(subject, avro(with_fields(drop="qty")))
    string_qty = avro(with_fields({"name": "qty", "type": "string", "default": ""}, drop="qty"))
    assert client.test_compatibility(subject, string_qty) is True
    client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    assert client.test_compatibility_all_versions(subject, string_qty) is False
    assert client.test_compatibility(subject, string_qty, version=1) is False
    assert client.test_compatibility(subject, string_qty, version=2) is True


def test_refusals_carry_confluents_error_codes(url: str, client: SchemaRegistryClient, subject: str) -> None:
    assert refusal(lambda: client.get_versions(subject)) == (404, 40401)
    assert refusal(lambda: client.lookup_schema(subject, avro(V1))) == (404, 40401)
    schema_id = client.register_schema(subject, avro(V1))
    assert refusal(lambda: client.get_version(subject, 7)) == (404, 40402)
    assert refusal(lambda: client.get_schema(10**6)) == (404, 40403)
    assert refusal(lambda: client.lookup_schema(subject, avro(with_fields(drop="qty")))) == (404, 40403)
    assert refusal(lambda: client.register_schema(subject, Schema("{not json", "AVRO"))) == (422, 42201)
    assert refusal(lambda: client.register_schema(subject, Schema('{"type": "record", "name": "NoFields"}', "AVRO"))) == (422, 42201)
    assert refusal(lambda: client.set_compatibility(subject, "SIDEWAYS")) == (422, 42203)
    assert refusal(lambda: client.get_compatibility(subject)) == (404, 40408)  # no subject-level level set
    answer = httpx.get(f"{url}/subjects/{subject}/versions/first", timeout=5)
    assert answer.status_code == 422 and answer.json()["error_code"] == 42202
    assert answer.headers["content-type"] == MEDIA_TYPE
    assert httpx.get(f"{url}/config/{subject}", params={"defaultToGlobal": "true"}, timeout=5).json() == {"compatibilityLevel": "BACKWARD"}
    assert httpx.get(f"{url}/schemas/ids/{schema_id}", params={"subject": subject, "format": "serialized"}, timeout=5).status_code == 200
    assert httpx.get(f"{url}/nowhere", timeout=5).json() == {"error_code": 404, "message": "HTTP 404 Not Found"}


def test_a_deleted_subject_keeps_its_ids_until_a_permanent_delete_and_ids_are_never_reused(url: str, client: SchemaRegistryClient,
                                                                                         subject: str) -> None:
    unique = with_fields({"name": f"f{uuid.uuid4().hex[:8]}", "type": "string", "default": ""})
    schema_id = client.register_schema(subject, avro(unique))
    assert refusal(lambda: client.delete_subject(subject, permanent=True)) == (404, 40405)  # soft delete first
    assert client.delete_subject(subject) == [1]
    assert refusal(lambda: client.get_versions(subject)) == (404, 40401) and subject not in client.get_subjects()
    assert json.loads(SchemaRegistryClient({"url": url}).get_schema(schema_id).schema_str) == unique
    assert client.delete_subject(subject, permanent=True) == [1]
    fresh = SchemaRegistryClient({"url": url})
    assert refusal(lambda: fresh.get_schema(schema_id)) == (404, 40403)
    assert fresh.register_schema(subject, avro(unique)) > schema_id and fresh.get_versions(subject) == [1]


def test_ids_subjects_and_levels_survive_a_restart(tmp_path: Path) -> None:
    state, port = tmp_path / "registry.json", free_port()
    with running(state, port) as url:
        client = SchemaRegistryClient({"url": url})
        schema_id = client.register_schema("orders-value", avro(V1))
        client.set_compatibility("orders-value", "FULL")
        client.set_compatibility(level="FORWARD")
    with running(state, port) as url:
        again = SchemaRegistryClient({"url": url})
        assert json.loads(again.get_schema(schema_id).schema_str) == V1
        assert again.register_schema("orders-value", avro(V1)) == schema_id and again.get_versions("orders-value") == [1]
        assert (again.get_compatibility("orders-value"), again.get_compatibility()) == ("FULL", "FORWARD")
        assert again.register_schema("other-value", avro(with_fields(drop="qty"))) == schema_id + 1


def test_schemas_register_fills_it_once(url: str, monkeypatch) -> None:
    monkeypatch.setenv(registry.URL_ENV, url)
    monkeypatch.setenv(f"{ENV_PREFIX}SCHEMA_REGISTRY_MODE", "server")  # this test's simulator, not the stack's
    registry.forget()
    try:
        first = CliRunner().invoke(cli.app, ["schemas", "register"])
        second = CliRunner().invoke(cli.app, ["schemas", "register"])
    finally:
        registry.forget()
    assert first.exit_code == second.exit_code == 0 and first.stdout == second.stdout, first.output
    client = SchemaRegistryClient({"url": url})
    for subject, name in registry.subjects(Topics()):
        latest = client.get_latest_version(subject)
        assert latest.version == 1 and json.loads(latest.schema.schema_str) == json.loads(codec.schema_text(name))
        assert client.get_compatibility(subject) == "BACKWARD"


def test_the_stack_component_starts_it_and_registers_pushpipes_schemas(tmp_path: Path) -> None:
    """What `pushpipe up` does (in a home of this test's own, on a free port): start, register, healthy; again: nothing new."""
    settings = load(home=tmp_path, schema_registry_url=f"http://127.0.0.1:{free_port()}")
    component = SchemaRegistry()
    try:
        component.start(settings)
        component.start(settings)  # idempotent: running and registered already
        health = component.health(settings)
        subjects = registry.subjects(settings.topics)
        assert health.ok and health.detail == f"simulator: {len(subjects)} subjects, {len({n for _, n in subjects})} schemas"
        client = SchemaRegistryClient({"url": settings.schema_registry_url})
        assert all(client.get_versions(subject) == [1] for subject, _ in subjects)
        assert state_file(settings).exists()
    finally:
        component.stop(settings)
    assert not component.health(settings).ok
