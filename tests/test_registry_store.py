"""The schema registry simulator without its process: the store's contract (ids, versions, levels, its file), the
compatibility levels, and how the stack runs it (settings, `pushpipe up`'s component, the jobs' environment)."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import avro.schema
import pytest

from pushpipe.config import load
from pushpipe.infra import flink
from pushpipe.infra.components import services
from pushpipe.infra.jobs import FlinkJob
from pushpipe.infra.schema_registry import SchemaRegistry, state_file
from pushpipe.simulators import registry_compat
from pushpipe.simulators.registry_store import Refusal, Store

V1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}
OPTIONAL_NOTE = {**V1, "fields": [*V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
REQUIRED_NOTE = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string"}]}
NO_QTY = {**V1, "fields": V1["fields"][:1]}


def body(doc: dict, indent: int | None = None) -> dict:
    return {"schema": json.dumps(doc, indent=indent)}


def refused(call) -> int:
    with pytest.raises(Refusal) as refusal:
        call()
    return refusal.value.error_code


def parsed(doc: dict) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(doc))


@pytest.mark.parametrize("level, new, verdict", [
    ("BACKWARD", OPTIONAL_NOTE, True), ("BACKWARD", REQUIRED_NOTE, False), ("BACKWARD", NO_QTY, True),
    ("FORWARD", REQUIRED_NOTE, True), ("FORWARD", NO_QTY, False), ("FULL", OPTIONAL_NOTE, True), ("FULL", NO_QTY, False),
    ("NONE", {"type": "string"}, True), ("BACKWARD", {"type": "string"}, False),
])
def test_each_level_asks_avros_checker_the_right_way_round(level: str, new: dict, verdict: bool) -> None:
    assert (registry_compat.check(level, parsed(new), [(1, parsed(V1))]) == []) is verdict


def test_a_transitive_level_looks_at_every_version_the_others_at_the_latest() -> None:
    string_qty = {**V1, "fields": [V1["fields"][0], {"name": "qty", "type": "string", "default": ""}]}
    earlier = [(1, parsed(V1)), (2, parsed(NO_QTY))]
    assert registry_compat.check("BACKWARD", parsed(string_qty), earlier) == []
    [why] = registry_compat.check("BACKWARD_TRANSITIVE", parsed(string_qty), earlier)
    assert why.startswith("oldSchemaVersion 1: the new schema cannot read its data: TYPE_MISMATCH")


def test_the_same_schema_in_other_whitespace_is_the_same_schema_under_every_subject(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.json")
    first = store.register("a-value", body(V1))
    assert store.register("a-value", body(V1, indent=2)) == first == store.register("b-value", body(V1))
    assert [v.version for v in store.versions("a-value", deleted=False)] == [1]
    assert store.lookup("b-value", body(V1, indent=4), deleted=False) == {"subject": "b-value", "version": 1, "id": first,
                                                                           "schema": json.dumps(V1, separators=(",", ":"))}
    assert store.register("a-value", body(OPTIONAL_NOTE)) == first + 1
    assert store.document("a-value", store.version("a-value", "latest"))["version"] == 2
    assert refused(lambda: store.register("a-value", body(REQUIRED_NOTE))) == 409


def test_the_store_file_brings_back_everything_and_ids_only_grow(tmp_path: Path) -> None:
    path = tmp_path / "run" / "registry.json"
    store = Store(path)
    first = store.register("a-value", body(V1))
    store.set_compatibility("a-value", {"compatibility": "full"})
    store.delete_subject("a-value", permanent=False)
    store.delete_subject("a-value", permanent=True)
    again = Store(path)
    assert again.subject_names(deleted=True) == [] and refused(lambda: again.schema(first)) == 40403
    assert again.register("a-value", body(V1)) == first + 1  # a permanently deleted schema's id is not given again
    assert again.compatibility("a-value", default_to_global=True) == "BACKWARD" and Store(path).schema(first + 1) == again.schema(first + 1)


@pytest.mark.parametrize("request_body, code", [
    ({"schema": "{"}, 42201), ({"schema": ""}, 42201), ({}, 42201),
    ({"schema": '{"type": "record", "name": "R", "fields": [{"name": "x", "type": "nope"}]}'}, 42201),
    ({"schema": "{}", "schemaType": "PROTOBUF"}, 42201),
    ({"schema": json.dumps(V1), "references": [{"name": "x", "subject": "x", "version": 1}]}, 42201),
])
def test_what_is_not_an_avro_schema_without_references_is_invalid(tmp_path: Path, request_body: dict, code: int) -> None:
    assert refused(lambda: Store(tmp_path / "r.json").register("a-value", request_body)) == code


def test_versions_and_levels_are_refused_as_confluent_refuses_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.json")
    store.register("a-value", body(V1))
    assert [refused(lambda: store.version("a-value", v)) for v in ("2", "0", "x", "-2")] == [40402, 42202, 42202, 42202]
    assert refused(lambda: store.version("b-value", "latest")) == 40401
    assert refused(lambda: store.set_compatibility(None, {"compatibility": "SOMETIMES"})) == 42203
    assert refused(lambda: store.compatibility("a-value")) == 40408
    assert refused(lambda: store.delete_compatibility("b-value")) == 40401


def test_the_stack_runs_the_simulator_where_the_setting_says_and_the_jobs_are_told(tmp_path: Path, monkeypatch) -> None:
    names = [s.name for s in services()]
    assert names.index("schema-registry") < names.index("send-api")
    settings = load(home=tmp_path, schema_registry_url="http://127.0.0.1:18999/")
    assert SchemaRegistry().args(settings) == ["--state", str(state_file(settings)), "--host", "127.0.0.1", "--port", "18999"]
    assert state_file(settings) == tmp_path / "run" / "schema-registry" / "registry.json"
    monkeypatch.setattr(flink, "pipeline_jars", lambda settings: "")
    assert FlinkJob("fanout").env(settings)["PUSHPIPE_SCHEMA_REGISTRY_URL"] == "http://127.0.0.1:18999"
    assert FlinkJob("dispatch").env(load(home=tmp_path, schema_registry_url=""))["PUSHPIPE_SCHEMA_REGISTRY_URL"] == ""


def test_a_registry_of_your_own_or_none_starts_nothing(tmp_path: Path) -> None:
    none = load(home=tmp_path, schema_registry_url="")
    SchemaRegistry().start(none)
    assert SchemaRegistry().health(none).ok and SchemaRegistry().address(none) == "-"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    own = load(home=tmp_path, schema_registry_mode="server", schema_registry_url=f"https://127.0.0.1:{port}")
    SchemaRegistry().start(own)
    assert not (tmp_path / "run" / "schema-registry").exists()
    health = SchemaRegistry().health(own)
    assert not health.ok and health.detail.startswith("server: ")
