"""The one Avro codec: Avro single-object encoding (Avro spec, "Single object encoding").

Wire format of every Kafka value: 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's parsing canonical form, then the Avro binary body.
Readers find the writer schema by fingerprint among the current schemas and the older
versions kept in `schemas/history/`, and resolve it to the current schema, so old writers
keep working after a compatible change. Each schema is parsed once per process.

Readers also take Confluent's schema-registry framing (0x00, a 4-byte schema id, the body): the
writer schema comes by id from the registry (`schemas/registry.py`) and is resolved the same way.
"""
from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import load_schema, parse_schema, to_parsing_canonical_form

from pushpipe.schemas.errors import BadRecord as BadRecord  # raised here and by schemas/registry.py

SCHEMA_DIR = Path(__file__).parent
HISTORY_DIR = SCHEMA_DIR / "history"
MAGIC = b"\xc3\x01"
HEADER_LEN = 10
RECORDS = ("Notification", "PushRequest", "DeviceEvent", "PreferenceEvent", "DispatchBatch", "DispatchBundle",
           "DispatchResult", "Receipt", "ReceiptBatch", "DeadLetter", "App")

Record = dict[str, Any]


def _rabin_table() -> list[int]:
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _rabin_table()


def fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of a parsed schema, little-endian as on the wire."""
    fp = 0xC15D213AA4D7A795
    for byte in to_parsing_canonical_form(schema).encode():
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


@dataclass(frozen=True)
class _Schemas:
    current: dict[str, Any]  # record name -> parsed schema
    headers: dict[str, bytes]  # record name -> MAGIC + fingerprint
    writers: dict[bytes, tuple[str, Any]]  # fingerprint -> (record name, writer schema)


@cache
def _schemas() -> _Schemas:
    current = {name: load_schema(str(SCHEMA_DIR / f"pushpipe.{name}.avsc")) for name in RECORDS}
    writers = {fingerprint(s): (name, s) for name, s in current.items()}
    for path in sorted(HISTORY_DIR.glob("*.avsc")):
        name = path.name.split(".")[0]
        old = parse_schema(json.loads(path.read_text()))
        writers.setdefault(fingerprint(old), (name, old))
    headers = {name: MAGIC + fingerprint(s) for name, s in current.items()}
    return _Schemas(current, headers, writers)


def schema(name: str) -> Any:
    """The current parsed schema of a record type (e.g. "PushRequest")."""
    return _schemas().current[name]


def schema_text(name: str) -> str:
    """The current schema as one JSON document, its named types written inline: what a schema registry takes."""
    return json.dumps({key: value for key, value in schema(name).items() if not key.startswith("__")})  # not fastavro's marks


def encode(name: str, record: Record) -> bytes:
    return _schemas().headers[name] + body(name, record)


def body(name: str, record: Record) -> bytes:
    """The Avro binary body of a record, without the single-object header: an item for `encode_array`."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _schemas().current[name], record)
    return out.getvalue()


def encode_array(name: str, bodies: list[bytes]) -> bytes:
    """A `name` record, a type whose only field is an array, from its items' bodies (see `body`).

    Avro writes an array as blocks, each a count (zig-zag varint) and its items, ended by a 0 count:
    joining encoded items is cheaper than decoding them and encoding them again.
    """
    header = _schemas().headers[name]
    if not bodies:
        return header + b"\x00"
    count, varint = len(bodies) << 1, bytearray()
    while count > 0x7F:
        varint.append((count & 0x7F) | 0x80)
        count >>= 7
    varint.append(count)
    return b"".join([header, bytes(varint), *bodies, b"\x00"])


def _writer(payload: bytes | None) -> tuple[str, Any, int]:
    """(record name, writer schema, where the body starts) of a value, or raise BadRecord."""
    if payload and payload[:2] == MAGIC and len(payload) >= HEADER_LEN:
        writer = _schemas().writers.get(payload[2:HEADER_LEN])
        if writer is None:
            raise BadRecord("unknown_schema", f"unknown writer schema fingerprint {payload[2:HEADER_LEN].hex()}")
        return (*writer, HEADER_LEN)
    if payload and payload[0] == 0:  # Confluent's framing
        from pushpipe.schemas import registry  # only here: confluent-kafka's registry client is slow to import

        return (*registry.writer(payload, _registered), registry.HEADER_LEN)
    raise BadRecord("malformed_avro", "value is not Avro single-object encoded (missing C3 01 header) nor in Confluent's "
                                      "schema-registry framing (00 and a schema id)")


def _registered(writer: Any) -> tuple[str, Any]:
    """(record name, schema to read with) of a writer schema from a registry: one of ours (current or history) by
    fingerprint, else the writer itself, if it is a record of ours by its full name (pushpipe.PushRequest, ...)."""
    known = _schemas().writers.get(fingerprint(writer))
    if known is not None:
        return known
    full_name = str(writer.get("name", "")) if isinstance(writer, dict) else str(writer)
    if not full_name.startswith("pushpipe.") or full_name.removeprefix("pushpipe.") not in RECORDS:
        raise BadRecord("unknown_schema", f"writer schema {full_name!r} is not a pushpipe record ({', '.join(RECORDS)})")
    return full_name.removeprefix("pushpipe."), writer


def record_name(payload: bytes | None) -> str | None:
    """The record type a value was written as, or None when unknown or not Avro."""
    try:
        return _writer(payload)[0]
    except BadRecord:
        return None


def decode(name: str, payload: bytes | None) -> Record:
    """Decode a value (single-object encoded or in Confluent's framing) as the current `name` schema, or raise BadRecord."""
    writer_name, writer_schema, body_at = _writer(payload)
    if writer_name != name:
        raise BadRecord("wrong_schema", f"expected {name}, got a {writer_name} record")
    assert payload is not None  # _writer refused it otherwise
    try:
        return cast(Record, fastavro.schemaless_reader(io.BytesIO(payload[body_at:]), writer_schema, _schemas().current[name]))
    except SchemaResolutionError as exc:
        raise BadRecord("incompatible_schema", f"cannot read {name} as its writer wrote it: {exc}") from exc
    except Exception as exc:  # fastavro raises many types for truncated or corrupt bodies
        raise BadRecord("malformed_avro", f"cannot decode {name} body: {type(exc).__name__}: {exc}") from exc


def new_record(name: str, **fields: Any) -> Record:
    """A record of the current schema with every default filled in, then `fields`."""
    plain, fresh = _defaults(name)
    record = dict(plain)
    for key, make in fresh:
        record[key] = make()
    record.update(fields)
    return record


@cache
def _defaults(name: str) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]:
    """The defaults of a record type: the plain ones to copy at once, and for maps and arrays what makes each
    record its own (a dict of plain defaults copied in C: 1.3 µs a PushRequest where a comprehension took 3.1, one run each)."""
    plain, fresh = {}, []
    for f in schema(name)["fields"]:
        if "default" not in f:
            continue
        value = f["default"]
        if isinstance(value, (dict, list)):
            fresh.append((f["name"], partial(copy.deepcopy, value) if value else type(value)))
        else:
            plain[f["name"]] = value
    return plain, tuple(fresh)
