"""The schema registry simulator (`python -m pushpipe.simulators.schema_registry`) as a managed background service.

With PUSHPIPE_SCHEMA_REGISTRY_MODE=embedded (the default) it listens on schema_registry_url's host and port;
run_dir/schema-registry/ holds its pid, log and registry.json (subjects, schemas and their ids, kept across restarts, so
a value framed with an id stays readable). Once it answers, pushpipe's schemas are registered in it, as `pushpipe schemas
register` does, so a producer's AvroSerializer finds them without registering anything. The jobs reach it through
PUSHPIPE_SCHEMA_REGISTRY_URL, which infra/jobs.py sets for them. With mode "server" nothing is started: the URL is the
user's own registry (or none), and its health is whether it answers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pushpipe.config import Settings, masked_url
from pushpipe.infra import http, process
from pushpipe.infra.pyservice import PythonService
from pushpipe.infra.service import Health

NAME = "schema-registry"


def state_file(settings: Settings) -> Path:
    return process.service_dir(settings, NAME) / "registry.json"


def embedded(settings: Settings) -> bool:
    return settings.schema_registry_mode == "embedded" and bool(settings.schema_registry_url)


class SchemaRegistry(PythonService):
    name, process_name, module, what = NAME, NAME, "pushpipe.simulators.schema_registry", "schema registry simulator"

    def address(self, settings: Settings) -> str:
        return settings.schema_registry_url or "-"

    def args(self, settings: Settings) -> list[str]:
        where = urlsplit(settings.schema_registry_url)
        return ["--state", str(state_file(settings)), "--host", where.hostname or "127.0.0.1", "--port", str(where.port or 80)]

    def start(self, settings: Settings) -> None:
        """Start it (embedded mode only) and register pushpipe's schemas: idempotent, a registered schema keeps its id."""
        if not embedded(settings):
            return
        super().start(settings)
        register_schemas(settings)

    def health(self, settings: Settings) -> Health:
        if embedded(settings):
            return super().health(settings)
        if not settings.schema_registry_url:
            return Health(True, "none configured")
        return _answers(settings.schema_registry_url.split(",")[0])

    def health_detail(self, answer: dict[str, Any]) -> Health:
        return Health(bool(answer.get("ok")), f"simulator: {answer.get('subjects', 0)} subjects, {answer.get('schemas', 0)} schemas")


def register_schemas(settings: Settings) -> None:
    """Every subject of pushpipe's topics in the registry, or ServiceFailed saying which one it refused."""
    from pushpipe.schemas import registry  # only here: confluent-kafka's registry client is slow to import (`status` needs none)

    registry.forget()  # this process's client remembers what it registered: ask the registry itself
    try:
        for _ in registry.register_all(settings.schema_registry_url, settings.topics):
            pass
    except registry.RegistryError as refused:
        raise process.ServiceFailed(f"schema registry: {masked_url(str(refused))}") from None


def _answers(url: str) -> Health:
    """A registry of the user's own: healthy when it tells its global compatibility level (user:password@ is basic auth)."""
    try:
        level = http.client().get(f"{url}/config", timeout=2).raise_for_status().json()["compatibilityLevel"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as failed:
        return Health(False, f"server: {type(failed).__name__}")
    return Health(True, f"server, compatibility {level}")
