"""Compatibility levels of a Confluent schema registry, judged with Apache Avro's own schema-resolution checker.

Confluent's registry asks Avro's Java `SchemaCompatibility.checkReaderWriterCompatibility` whether a reader schema can
read what a writer schema wrote; `avro.compatibility` (the `avro` package) is the Python port of that class, so the
simulator's verdicts follow the same resolution rules rather than a hand-written approximation of them.

BACKWARD: the new schema reads data written with the latest one; FORWARD: the latest reads the new one's data; FULL:
both; *_TRANSITIVE: against every version, not only the latest; NONE: no check.
"""
from __future__ import annotations

from collections.abc import Sequence

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import Schema

LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")
DEFAULT_LEVEL = "BACKWARD"  # Confluent's default


def problems(reader: Schema, writer: Schema) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty: it can), in Avro's terms."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)  # type: ignore[no-untyped-call]  # avro: __init__ untyped
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    kinds = ", ".join(sorted({kind.name.upper() for kind in result.incompatibilities}))
    return [f"{kinds}: {'; '.join(sorted(result.messages))} at {', '.join(sorted(result.locations))}"]


def check(level: str, new: Schema, earlier: Sequence[tuple[int, Schema]]) -> list[str]:
    """Why `new` may not follow `earlier` ((version, schema), oldest first) under `level`; empty when it may."""
    if level == "NONE" or not earlier:
        return []
    against = earlier if level.endswith("_TRANSITIVE") else earlier[-1:]
    found = []
    for version, old in against:
        if level.startswith(("BACKWARD", "FULL")):
            found += [f"oldSchemaVersion {version}: the new schema cannot read its data: {p}" for p in problems(new, old)]
        if level.startswith(("FORWARD", "FULL")):
            found += [f"oldSchemaVersion {version}: it cannot read the new schema's data: {p}" for p in problems(old, new)]
    return found
