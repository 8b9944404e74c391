"""A Confluent-compatible schema registry: readers of Confluent's framing, and registering pushpipe's schemas.

Confluent's framing of a Kafka value: the magic byte 0x00, the writer schema's id (4 bytes, big-endian), the
Avro binary body. The codec hands such values here: the writer schema comes by id from the registry at
PUSHPIPE_SCHEMA_REGISTRY_URL, read from the environment (the jobs' Python workers inherit it from the job's
process), is parsed once per id and process, and the codec resolves it to its current schema. The client is
made on first use in each process, never pickled into a job's functions. A registry that does not answer
makes the value a dead letter, and for a few seconds the next ones at once, so a worker never stalls on each.

`pushpipe schemas register` puts each topic's value schema under `<topic>-value` (Confluent's default
TopicNameStrategy) and, for push.receipts, which carries two record types, each under its full name
(RecordNameStrategy: `pushpipe.Receipt`, `pushpipe.ReceiptBatch`); every subject BACKWARD compatible.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import httpx2  # confluent-kafka's registry client talks HTTP with it
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from fastavro.schema import parse_schema

from pushpipe.schemas import codec
from pushpipe.schemas.errors import BadRecord

if TYPE_CHECKING:
    from pushpipe.config import Topics

HEADER_LEN = 5  # 0x00 and the schema id
URL_ENV = "PUSHPIPE_SCHEMA_REGISTRY_URL"  # config.Settings.schema_registry_url
# a reader waits for two tries of at most 5 s each before the value becomes a dead letter
CLIENT_CONF: dict[str, Any] = {"timeout": 5, "max.retries": 1, "retries.wait.ms": 200, "retries.max.wait.ms": 1000}
QUIET_AFTER_FAILURE_S = 10.0  # after a registry failure, lookups of uncached ids fail at once for this long
COMPATIBILITY = "BACKWARD"

Known = Callable[[Any], tuple[str, Any]]  # a parsed writer schema -> (record name, schema to read with), or BadRecord
_failed_until: dict[str, float] = {}  # registry URL -> monotonic time before which it is not asked again


def writer(payload: bytes, known: Known) -> tuple[str, Any]:
    """(record name, writer schema) of a value in Confluent's framing, by its schema id, or raise BadRecord."""
    if len(payload) < HEADER_LEN:
        raise BadRecord("malformed_avro", f"a {len(payload)}-byte value is too short for Confluent's framing (00 and a 4-byte schema id)")
    schema_id, url = int.from_bytes(payload[1:HEADER_LEN], "big"), os.environ.get(URL_ENV, "")
    if not url:
        raise BadRecord("schema_registry_not_configured", f"value is in Confluent's schema-registry framing (schema id {schema_id}): "
                                                          f"set {URL_ENV} so that pushpipe can fetch its writer schema")
    return _writer(url, schema_id, known)


@cache  # a schema id stands for one schema for good; failures raise, so they are not kept
def _writer(url: str, schema_id: int, known: Known) -> tuple[str, Any]:
    return known(_parsed(_fetch(url, schema_id), schema_id))


def _fetch(url: str, schema_id: int) -> Schema:
    if time.monotonic() < _failed_until.get(url, 0.0):
        raise BadRecord("schema_registry_unavailable", f"schema id {schema_id}: the schema registry failed less than "
                                                       f"{QUIET_AFTER_FAILURE_S:g} s ago; not asked again yet")
    try:
        return client(url).get_schema(schema_id)
    except SchemaRegistryError as refused:
        if refused.http_status_code == 404:
            raise BadRecord("unknown_schema_id", f"the schema registry has no schema id {schema_id}") from None
        failure = f"HTTP {refused.http_status_code}: {refused.error_message}"
    except (httpx2.HTTPError, ValueError) as down:  # ValueError: an answer that is not JSON
        failure = f"{type(down).__name__}: {down}"
    _failed_until[url] = time.monotonic() + QUIET_AFTER_FAILURE_S
    raise BadRecord("schema_registry_unavailable", f"schema id {schema_id}: the schema registry did not answer ({failure})")


def _parsed(schema: Schema, schema_id: int) -> Any:
    """The parsed Avro writer schema, or BadRecord."""
    if (schema.schema_type or "AVRO") != "AVRO":
        raise BadRecord("unknown_schema", f"schema id {schema_id} is a {schema.schema_type} schema, not Avro")
    if schema.references:
        raise BadRecord("unknown_schema", f"schema id {schema_id} refers to other subjects' schemas, which pushpipe does not "
                                          "fetch: register it with its named types inline")
    try:
        return parse_schema(json.loads(schema.schema_str or ""))
    except Exception as exc:  # json and fastavro raise several types for a bad schema
        raise BadRecord("unknown_schema", f"schema id {schema_id} is not an Avro schema pushpipe can parse: "
                                          f"{type(exc).__name__}: {exc}") from exc


def client(url: str) -> SchemaRegistryClient:
    """This process's client of the registry at `url`, made on first use; mock://name is a MemoryRegistry."""
    return _client(url, os.getpid())


@cache  # per process: a forked child makes its own (its HTTP connections are not the parent's)
def _client(url: str, pid: int) -> SchemaRegistryClient:
    return _new_client(url)


def _new_client(url: str) -> SchemaRegistryClient:
    conf = {"url": url, **CLIENT_CONF}
    return MemoryRegistry(conf) if url.startswith("mock://") else SchemaRegistryClient(conf)


class MemoryRegistry(MockSchemaRegistryClient):
    """confluent-kafka's in-memory registry, which keeps subjects' compatibility levels too (its mock sends those over
    HTTP); they are kept, not enforced. One per URL and process (see `client`): readers, the CLI and tests share it."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.compatibility: dict[str | None, str] = {}  # subject (None: global) -> level

    def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> str:
        if level is None:
            raise ValueError("level must be set")
        self.compatibility[subject_name] = level.upper()
        return level.upper()

    def get_compatibility(self, subject_name: str | None = None) -> str:
        return self.compatibility.get(subject_name) or self.compatibility.get(None, COMPATIBILITY)


def forget() -> None:
    """Drop this process's clients, cached writer schemas and failure memory (a changed URL, tests)."""
    _client.cache_clear()
    _writer.cache_clear()
    _failed_until.clear()


def subjects(topics: Topics) -> list[tuple[str, str]]:
    """(subject, record name) of every value schema pushpipe's topics carry."""
    one_type = [(topics.requests, "PushRequest"), (topics.device_events, "DeviceEvent"), (topics.device_feedback, "DeviceEvent"),
                (topics.preferences, "PreferenceEvent"), *((lane, "DispatchBundle") for lane in topics.lanes),
                (topics.retry, "DispatchBatch"), (topics.results, "DispatchResult"), (topics.dlq, "DeadLetter"), (topics.apps, "App")]
    return [(f"{topic}-value", name) for topic, name in one_type] + [(f"pushpipe.{name}", name) for name in ("Receipt", "ReceiptBatch")]


@dataclass(frozen=True)
class Registered:
    subject: str
    schema_id: int
    version: int


class RegistryError(Exception):
    """The registry did not answer, or refused: the message says which, in one line."""


def register(url: str, subject: str, schema_text: str) -> Registered:
    """Register an Avro schema under `subject` (BACKWARD compatible); registering it again changes nothing."""
    registry, schema = client(url), Schema(schema_text, "AVRO")
    try:
        registry.set_compatibility(subject, COMPATIBILITY)
        schema_id = registry.register_schema(subject, schema)
        version = registry.lookup_schema(subject, schema).version
    except SchemaRegistryError as refused:
        raise RegistryError(f"the schema registry at {url} refused {subject}: {refused.error_message} "
                            f"(HTTP {refused.http_status_code}, error {refused.error_code})") from None
    except (httpx2.HTTPError, ValueError) as down:
        raise RegistryError(f"the schema registry at {url} does not answer: {type(down).__name__}: {down}") from None
    return Registered(subject, schema_id, version or 0)


def register_all(url: str, topics: Topics) -> Iterator[tuple[str, Registered]]:
    """(record name, where it is) of each of pushpipe's subjects as it is registered (`register`); RegistryError stops it."""
    for subject, name in subjects(topics):
        yield name, register(url, subject, codec.schema_text(name))
