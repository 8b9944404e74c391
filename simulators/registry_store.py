"""The schema registry simulator's state: subjects, their versions, schemas by global id, compatibility levels.

It follows Confluent's documented contract for what clients see: a schema has one id wherever it is registered (the
same text under another subject gets the same id), ids are never reused, registering a subject's current schema again
changes nothing, a new version must pass the subject's compatibility level (registry_compat), a soft-deleted subject
keeps its versions until a permanent delete, which must come second. Only Avro schemas without references are taken
(pushpipe writes its named types inline); others are refused as invalid (42201) rather than stored unchecked.

Schemas are compared by their JSON with whitespace removed (Confluent compares a parsed schema's canonical string: the
same for every schema text pushpipe and confluent-kafka's serializers send). Every change is written at once to a JSON
file (replaced atomically), so a restarted simulator serves the same ids: a record framed with an id stays readable.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import avro.errors
import avro.schema

from pushpipe.simulators.registry_compat import DEFAULT_LEVEL, LEVELS, check

LATEST = ("latest", "-1")
MAX_VERSION = 2**31 - 1


class Refusal(Exception):
    """A request the registry refuses, as Confluent answers it: HTTP status, error code, message."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


@dataclass
class Version:
    version: int
    schema_id: int
    deleted: bool = False


@dataclass(frozen=True)
class Parsed:
    text: str  # the schema's JSON without whitespace: what is stored, compared and served
    schema: avro.schema.Schema


def parse(body: dict[str, Any]) -> Parsed:
    """The schema of a register, lookup or compatibility request body, or Refusal 42201."""
    kind = body.get("schemaType") or "AVRO"
    if kind != "AVRO":
        raise Refusal(422, 42201, f"Invalid schema: this registry simulator takes AVRO schemas only, not {kind}")
    if body.get("references"):
        raise Refusal(422, 42201, "Invalid schema: schema references are not supported by this simulator; write named types inline")
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise Refusal(422, 42201, "Invalid schema: empty schema")
    try:
        return Parsed(json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False), avro.schema.parse(text))
    except (ValueError, avro.errors.AvroException) as bad:  # json.JSONDecodeError is a ValueError
        raise Refusal(422, 42201, f"Invalid schema {text[:200]}: {bad}") from None


def version_number(text: str) -> int | None:
    """A version in a URL: None for the latest, else 1..2^31-1, or Refusal 42202."""
    if text in LATEST:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise Refusal(422, 42202, f"The specified version '{text}' is not a valid version id. Allowed values are between "
                                  f"[1, {MAX_VERSION}] and the string \"latest\"")
    return int(text)


def subject_not_found(subject: str) -> Refusal:
    return Refusal(404, 40401, f"Subject '{subject}' not found.")


class Store:
    """Everything the registry knows, kept in `path` (a JSON file) after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schemas: dict[int, str] = {}  # id -> schema text
        self.subjects: dict[str, list[Version]] = {}
        self.level = DEFAULT_LEVEL  # the global compatibility level
        self.levels: dict[str, str] = {}  # subject -> its own level
        self.next_id = 1
        self._avro: dict[int, avro.schema.Schema] = {}
        if path.exists():
            self._load(json.loads(path.read_text()))

    # ---- subjects and versions ------------------------------------------------------------------

    def register(self, subject: str, body: dict[str, Any]) -> int:
        """The id of the schema in `body` under `subject`: its current id if the subject has it, else a new version."""
        parsed, active = parse(body), self.versions(subject, deleted=False, must_exist=False)
        for version in active:
            if self.schemas[version.schema_id] == parsed.text:
                return version.schema_id
        found = check(self.level_of(subject), parsed.schema, [(v.version, self.avro(v.schema_id)) for v in active])
        if found:
            raise Refusal(409, 409, f"Schema being registered is incompatible with an earlier schema for subject \"{subject}\", "
                                    f"details: [{'; '.join(found)}] (compatibility {self.level_of(subject)})")
        schema_id = self._id_of(parsed.text)
        every = self.subjects.setdefault(subject, [])
        every.append(Version(max((v.version for v in every), default=0) + 1, schema_id))
        self._save()
        return schema_id

    def lookup(self, subject: str, body: dict[str, Any], deleted: bool) -> dict[str, Any]:
        """The subject's version holding the schema in `body` (40401 no subject, 40403 not under it)."""
        versions = self.versions(subject, deleted)
        text = parse(body).text
        for version in reversed(versions):
            if self.schemas[version.schema_id] == text:
                return self.document(subject, version)
        raise Refusal(404, 40403, "Schema not found")

    def versions(self, subject: str, deleted: bool, must_exist: bool = True) -> list[Version]:
        """The subject's versions, oldest first (soft-deleted ones too with `deleted`); 40401 if none."""
        found = [v for v in self.subjects.get(subject, []) if deleted or not v.deleted]
        if not found and must_exist:
            raise subject_not_found(subject)
        return found

    def version(self, subject: str, text: str, deleted: bool = False) -> Version:
        """One version of a subject by its number or `latest` (40401, 40402, 42202)."""
        number, versions = version_number(text), self.versions(subject, deleted)
        if number is None:
            return versions[-1]
        for version in versions:
            if version.version == number:
                return version
        raise Refusal(404, 40402, f"Version {number} not found.")

    def document(self, subject: str, version: Version) -> dict[str, Any]:
        return {"subject": subject, "version": version.version, "id": version.schema_id, "schema": self.schemas[version.schema_id]}

    def subject_names(self, deleted: bool) -> list[str]:
        return sorted(name for name in self.subjects if self.versions(name, deleted, must_exist=False))

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        """Soft delete (its versions hidden, ids still served), or, once soft-deleted, permanent delete."""
        every, active = self.versions(subject, deleted=True), self.versions(subject, deleted=False, must_exist=False)
        if permanent and active:
            raise Refusal(404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted")
        if not permanent and not active:
            raise Refusal(404, 40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently")
        if permanent:
            del self.subjects[subject]
            self.levels.pop(subject, None)
            self._forget_unused()
        for version in active:
            version.deleted = True
        self._save()
        return [v.version for v in every]

    # ---- schemas by id ----------------------------------------------------------------------------

    def schema(self, schema_id: int) -> str:
        if schema_id not in self.schemas:
            raise Refusal(404, 40403, f"Schema {schema_id} not found")
        return self.schemas[schema_id]

    def avro(self, schema_id: int) -> avro.schema.Schema:
        if schema_id not in self._avro:
            self._avro[schema_id] = avro.schema.parse(self.schemas[schema_id])
        return self._avro[schema_id]

    def _id_of(self, text: str) -> int:
        """The id `text` has anywhere, or a new one (ids only grow, so a deleted schema's id is never reused)."""
        for schema_id, known in self.schemas.items():
            if known == text:
                return schema_id
        schema_id, self.next_id = self.next_id, self.next_id + 1
        self.schemas[schema_id] = text
        return schema_id

    def _forget_unused(self) -> None:
        """After a permanent delete: schemas no subject version holds any more are gone (Confluent: 40403 for them)."""
        used = {v.schema_id for versions in self.subjects.values() for v in versions}
        for schema_id in set(self.schemas) - used:
            del self.schemas[schema_id]
            self._avro.pop(schema_id, None)

    # ---- compatibility ----------------------------------------------------------------------------

    def level_of(self, subject: str) -> str:
        return self.levels.get(subject, self.level)

    def compatibility(self, subject: str | None, default_to_global: bool = False) -> str:
        """The global level, or a subject's own (40408 if it has none, unless `default_to_global`)."""
        if subject is None or (subject not in self.levels and default_to_global):
            return self.level
        if subject not in self.levels:
            raise Refusal(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
        return self.levels[subject]

    def set_compatibility(self, subject: str | None, body: dict[str, Any]) -> str:
        level = str(body.get("compatibility", "")).upper()
        if level not in LEVELS:
            raise Refusal(422, 42203, "Invalid compatibility level. Valid values are none, backward, forward, full, "
                                      "backward_transitive, forward_transitive, and full_transitive")
        if subject is None:
            self.level = level
        else:
            self.levels[subject] = level
        self._save()
        return level

    def delete_compatibility(self, subject: str) -> str:
        """Drop a subject's own level (it follows the global one again); the level it had."""
        if subject not in self.levels and subject not in self.subjects:
            raise subject_not_found(subject)
        level = self.levels.pop(subject, self.level)
        self._save()
        return level

    def test(self, subject: str, version: str | None, body: dict[str, Any]) -> list[str]:
        """Why the schema in `body` could not be registered after one version (or, with None, after the subject's
        versions its level looks at); empty when it could."""
        parsed = parse(body)
        if version is None:
            earlier = self.versions(subject, deleted=False, must_exist=False)
        else:
            earlier = [self.version(subject, version)]
        return check(self.level_of(subject), parsed.schema, [(v.version, self.avro(v.schema_id)) for v in earlier])

    # ---- the state file ---------------------------------------------------------------------------

    def _save(self) -> None:
        doc = {"next_id": self.next_id, "compatibility": self.level, "subject_compatibility": self.levels,
               "schemas": {str(i): text for i, text in self.schemas.items()},
               "subjects": {name: [asdict(v) for v in versions] for name, versions in self.subjects.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        os.replace(partial, self.path)

    def _load(self, doc: dict[str, Any]) -> None:
        self.next_id, self.level = int(doc["next_id"]), str(doc["compatibility"])
        self.levels = dict(doc["subject_compatibility"])
        self.schemas = {int(i): text for i, text in doc["schemas"].items()}
        self.subjects = {name: [Version(**v) for v in versions] for name, versions in doc["subjects"].items()}

    def counts(self) -> dict[str, int]:
        return {"subjects": len(self.subject_names(deleted=False)), "schemas": len(self.schemas)}
