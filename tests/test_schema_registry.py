"""Confluent's framing and a schema registry: values from confluent-kafka's AvroSerializer read by the codec, evolution both
ways, clear dead-letter reasons, and `pushpipe schemas register` (all against confluent-kafka's in-memory registry)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import cast

import httpx2
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from typer.testing import CliRunner

from pushpipe import cli
from pushpipe.config import ENV_PREFIX, Topics
from pushpipe.jobs.deadletters import DLQ, decode_or_dlq
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import codec, registry

URL = "mock://test"
DOWN = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once
PASSWORD = "s3cret-registry"


@pytest.fixture
def memory_registry(monkeypatch) -> Iterator[registry.MemoryRegistry]:
    """The in-memory registry at mock://test. In confluent-kafka 2.16.1 each mock client has a store of its own (clients with
    the same URL share nothing): the codec's readers, `pushpipe schemas register` and the tests' serializers share this
    process's one client of the URL (registry.client)."""
    monkeypatch.setenv(registry.URL_ENV, URL)
    monkeypatch.setenv(f"{ENV_PREFIX}SCHEMA_REGISTRY_MODE", "server")  # in memory: no simulator to run
    registry.forget()
    yield cast(registry.MemoryRegistry, registry.client(URL))
    registry.forget()


def serialized(client: SchemaRegistryClient, schema_text: str, record: dict, topic: str = "push.requests") -> bytes:
    """`record` as confluent-kafka's AvroSerializer frames it (registering `schema_text` under <topic>-value)."""
    return AvroSerializer(client, schema_text)(record, SerializationContext(topic, MessageField.VALUE))


def test_a_value_from_confluents_avro_serializer_decodes_as_the_single_object_one(memory_registry: registry.MemoryRegistry) -> None:
    request = push_request("app", ["u1", "u2"], "hi", "there", campaign="c1")
    framed = serialized(memory_registry, codec.schema_text("PushRequest"), request)
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == memory_registry.get_latest_version("push.requests-value").schema_id
    assert codec.decode("PushRequest", framed) == codec.decode("PushRequest", codec.encode("PushRequest", request)) == request
    assert codec.record_name(framed) == "PushRequest"
    receipt = codec.new_record("Receipt", receipt_id="r1", msg_id="m1", app_id="app", vendor="apns", token="t1", kind="delivered", ts=1)
    framed_batch = serialized(memory_registry, codec.schema_text("ReceiptBatch"), {"receipts": [receipt]}, "push.receipts")
    assert codec.record_name(framed_batch) == "ReceiptBatch"  # how analytics tells a batch from a single Receipt


def test_each_writer_schema_is_fetched_once_and_single_object_values_never_ask(memory_registry: registry.MemoryRegistry,
                                                                              monkeypatch) -> None:
    lookups = []
    fetch = memory_registry.get_schema
    monkeypatch.setattr(memory_registry, "get_schema", lambda schema_id, *args, **kwargs: lookups.append(schema_id) or fetch(schema_id))
    request = push_request("app", ["u1"], "t", "b")
    framed = serialized(memory_registry, codec.schema_text("PushRequest"), request)
    for _ in range(3):
        assert codec.decode("PushRequest", framed) == request
        assert codec.decode("PushRequest", codec.encode("PushRequest", request)) == request
    assert len(lookups) == 1
    assert codec._writer(framed)[1] is codec.schema("PushRequest")  # our own schema: read as single-object values are, unresolved


def test_decoding_single_object_values_does_not_load_the_registry_client() -> None:
    check = ("import sys; from pushpipe.producer import push_request; from pushpipe.schemas import codec; "
             "r = push_request('app', ['u'], 't', 'b'); assert codec.decode('PushRequest', codec.encode('PushRequest', r)) == r; "
             "print(sorted(m for m in sys.modules if m.startswith('confluent_kafka.schema_registry') or m == 'pushpipe.schemas.registry'))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_client_is_made_once_per_process() -> None:
    registry.forget()
    try:
        assert registry.client(URL) is registry.client(URL)
        assert registry._client(URL, -1) is not registry.client(URL)  # a forked child (another pid) makes its own
    finally:
        registry.forget()


def test_an_old_writer_from_the_registry_is_read_by_the_current_reader(memory_registry: registry.MemoryRegistry) -> None:
    old = {
        "msg_id": "m-old", "app_id": "app", "environment": "production", "target": "pin", "pins": ["u1"],
        "tokens": [], "notification": {"title": "t", "body": "b", "data": {}, "sound": None, "badge": None,
                                       "collapse_id": None, "template_id": None, "template_vars": {}},
        "priority": "high", "category": "transactional", "ttl_s": 60, "deliver_at": None, "created_at": 5,
    }
    framed = serialized(memory_registry, (codec.HISTORY_DIR / "PushRequest.v1.avsc").read_text(), old)
    decoded = codec.decode("PushRequest", framed)
    assert decoded["msg_id"] == "m-old" and decoded["pins"] == ["u1"]
    assert decoded["campaign"] is None and decoded["segment"] == {} and decoded["recurrence"] is None  # the current schema's defaults


def test_a_newer_writer_with_an_added_field_is_read_by_a_reader_that_does_not_know_it(memory_registry: registry.MemoryRegistry) -> None:
    newer = json.loads(codec.schema_text("PushRequest"))
    newer["fields"].insert(2, {"name": "locale_hint", "type": ["null", "string"], "default": None})  # between others: skipped, not cut off
    request = push_request("app", ["u1"], "hi", "there")
    framed = serialized(memory_registry, json.dumps(newer), {**request, "locale_hint": "de-DE"})
    assert codec.decode("PushRequest", framed) == request


def dead_letter_of(payload: bytes, name: str = "PushRequest") -> dict:
    [(tag, letter)] = decode_or_dlq("fanout", "push.requests", name, payload)
    assert tag is DLQ
    return codec.decode("DeadLetter", letter)


def test_without_a_registry_url_a_confluent_value_is_dead_lettered_saying_what_to_set(memory_registry: registry.MemoryRegistry,
                                                                                     monkeypatch) -> None:
    framed = serialized(memory_registry, codec.schema_text("PushRequest"), push_request("app", ["u1"], "t", "b"))
    monkeypatch.delenv(registry.URL_ENV)
    letter = dead_letter_of(framed)
    assert letter["error"] == "schema_registry_not_configured" and "PUSHPIPE_SCHEMA_REGISTRY_URL" in letter["reason"]
    assert letter["payload"] == framed


def test_a_schema_id_the_registry_does_not_know_is_dead_lettered(memory_registry: registry.MemoryRegistry) -> None:
    letter = dead_letter_of(b"\x00" + (4242).to_bytes(4, "big") + b"\x02x")
    assert letter["error"] == "unknown_schema_id" and "4242" in letter["reason"]


@pytest.mark.parametrize(("schema", "record", "error"), [
    ({"type": "record", "name": "Order", "namespace": "com.acme", "fields": [{"name": "id", "type": "string"}]}, {"id": "o1"},
     "unknown_schema"),
    ({"type": "record", "name": "PushRequest", "namespace": "pushpipe", "fields": [{"name": "msg_id", "type": "long"}]}, {"msg_id": 7},
     "incompatible_schema"),
])
def test_a_writer_schema_pushpipe_cannot_read_is_dead_lettered(memory_registry: registry.MemoryRegistry, schema: dict, record: dict,
                                                                error: str) -> None:
    letter = dead_letter_of(serialized(memory_registry, json.dumps(schema), record))
    assert letter["error"] == error and letter["reason"]


def test_a_record_of_another_type_is_refused(memory_registry: registry.MemoryRegistry) -> None:
    event = device_event("app", "u1", "t" * 64)
    framed = serialized(memory_registry, codec.schema_text("DeviceEvent"), event, "device.events")
    assert dead_letter_of(framed)["error"] == "wrong_schema"
    assert codec.decode("DeviceEvent", framed) == event


def test_a_schema_that_is_not_avro_is_dead_lettered(memory_registry: registry.MemoryRegistry) -> None:
    schema_id = memory_registry.register_schema("push.requests-value", Schema('{"type": "object"}', "JSON"))
    letter = dead_letter_of(b"\x00" + schema_id.to_bytes(4, "big") + b"{}")
    assert letter["error"] == "unknown_schema" and "JSON" in letter["reason"]


def test_a_registry_that_does_not_answer_dead_letters_and_is_not_asked_again_at_once(monkeypatch) -> None:
    monkeypatch.setenv(registry.URL_ENV, DOWN)
    registry.forget()
    framed = b"\x00" + (1).to_bytes(4, "big") + b"\x02x"
    try:
        letter = dead_letter_of(framed)  # the real client against a closed port
        assert letter["error"] == "schema_registry_unavailable" and "ConnectError" in letter["reason"]

        asked = []

        class Down:
            def get_schema(self, schema_id: int) -> Schema:
                asked.append(schema_id)
                raise httpx2.ConnectError("connection refused")

        registry.forget()
        monkeypatch.setattr(registry, "_new_client", lambda url: Down())
        assert [dead_letter_of(framed)["error"] for _ in range(3)] == ["schema_registry_unavailable"] * 3
        assert asked == [1]  # then quiet: a worker does not wait on the registry for every value
        monkeypatch.setattr(registry, "_failed_until", {})  # the quiet time is over
        assert dead_letter_of(framed)["error"] == "schema_registry_unavailable" and asked == [1, 1]
    finally:
        registry.forget()


def test_short_or_unframed_values_are_malformed(memory_registry: registry.MemoryRegistry) -> None:
    for payload in (b"\x00\x00\x01", b"\x01" + b"\x00" * 20):
        assert dead_letter_of(payload)["error"] == "malformed_avro"


def test_subjects_cover_every_topic_and_record() -> None:
    topics = Topics()
    found = dict(registry.subjects(topics))
    assert {subject.removesuffix("-value") for subject in found if subject.endswith("-value")} == set(topics.all()) - {topics.receipts}
    assert found["pushpipe.Receipt"] == "Receipt" and found["pushpipe.ReceiptBatch"] == "ReceiptBatch"
    assert set(found.values()) == set(codec.RECORDS) - {"Notification"}  # a Notification travels inside a PushRequest
    assert registry.URL_ENV == f"{ENV_PREFIX}SCHEMA_REGISTRY_URL"


def test_schemas_register_registers_every_subject_backward_and_a_second_run_changes_nothing(memory_registry: registry.MemoryRegistry) -> None:
    first = CliRunner().invoke(cli.app, ["schemas", "register"])
    assert first.exit_code == 0, first.output
    subjects = dict(registry.subjects(Topics()))
    assert set(memory_registry.get_subjects()) == set(subjects)
    assert memory_registry.compatibility == dict.fromkeys(subjects, "BACKWARD")
    lines = first.stdout.splitlines()
    assert len(lines) == len(subjects)
    for subject, name in subjects.items():
        latest = memory_registry.get_latest_version(subject)
        assert latest.version == 1 and json.loads(latest.schema.schema_str) == json.loads(codec.schema_text(name))
        assert any(line.split()[:4] == [subject, name, "id", str(latest.schema_id)] and line.split()[-1] == "BACKWARD" for line in lines)

    second = CliRunner().invoke(cli.app, ["schemas", "register"])
    assert second.exit_code == 0 and second.stdout == first.stdout
    assert all(memory_registry.get_versions(subject) == [1] for subject in subjects)

    framed = serialized(memory_registry, codec.schema_text("PushRequest"), push_request("app", ["u1"], "t", "b"))
    assert int.from_bytes(framed[1:5], "big") == memory_registry.get_latest_version("push.requests-value").schema_id  # no new version


def test_schemas_register_says_in_one_line_when_the_registry_does_not_answer(monkeypatch) -> None:
    monkeypatch.setenv(registry.URL_ENV, f"http://pushpipe:{PASSWORD}@127.0.0.1:1")
    registry.forget()
    try:
        done = CliRunner().invoke(cli.app, ["schemas", "register"])
    finally:
        registry.forget()
    assert done.exit_code == 1 and not done.stdout
    assert done.stderr.startswith("pushpipe schemas register: the schema registry at http://pushpipe:***@127.0.0.1:1 does not answer")
    assert len(done.stderr.splitlines()) == 1 and PASSWORD not in done.output and "Traceback" not in done.output


def test_schemas_register_says_which_subject_the_registry_refused(memory_registry: registry.MemoryRegistry, monkeypatch) -> None:
    def refuse(subject_name: str, schema: Schema, normalize_schemas: bool = False) -> int:
        raise SchemaRegistryError(409, 409, f"Schema being registered is incompatible with an earlier schema for subject \"{subject_name}\"")

    monkeypatch.setattr(memory_registry, "register_schema", refuse)
    done = CliRunner().invoke(cli.app, ["schemas", "register"])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert done.stderr.splitlines() == ["pushpipe schemas register: the schema registry at mock://test refused push.requests-value: Schema being "
                                        "registered is incompatible with an earlier schema for subject \"push.requests-value\" (HTTP 409, error 409)"]


def test_schemas_register_without_a_registry_url_says_what_to_set(monkeypatch) -> None:
    monkeypatch.setenv(registry.URL_ENV, "")  # unset, it is the embedded registry's
    done = CliRunner().invoke(cli.app, ["schemas", "register"])
    assert done.exit_code == 1 and done.stderr.strip() == "pushpipe schemas register: no schema registry: set PUSHPIPE_SCHEMA_REGISTRY_URL"
