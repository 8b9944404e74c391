"""A Confluent Schema Registry simulator: the REST API that confluent-kafka's SchemaRegistryClient, AvroSerializer and
AvroDeserializer and `pushpipe schemas register` use, for the embedded stack (no Confluent-compatible registry installs
on these machines: Karapace is not on PyPI, Apicurio's dependencies are not on Maven Central).

    python -m pushpipe.simulators.schema_registry --state FILE [--host 127.0.0.1 --port 18481]

    POST   /subjects/{subject}/versions                   register -> {"id"}; the subject's current schema again: same id
    POST   /subjects/{subject}                            lookup -> {"subject", "id", "version", "schema"}
    GET    /subjects[?deleted=true]                       subject names
    GET    /subjects/{subject}/versions                   [1, 2, ...]
    GET    /subjects/{subject}/versions/{n|latest}[/schema]
    DELETE /subjects/{subject}[?permanent=true]           soft delete, then permanent -> the versions
    GET    /schemas/ids/{id}                              {"schema"} (subject, format, ... tolerated and ignored)
    GET    /schemas/types                                 ["AVRO"]
    GET|PUT /config, GET|PUT|DELETE /config/{subject}     compatibility level ({"compatibility": L} in, {"compatibilityLevel"} out)
    POST   /compatibility/subjects/{subject}/versions[/{n|latest}][?verbose=true]   {"is_compatible"[, "messages"]}
    GET    /health                                        {"ok", "subjects", "schemas"} (not Confluent's: for `pushpipe status`)

Answers are `application/vnd.schemaregistry.v1+json`; refusals are Confluent's `{"error_code", "message"}` (40401 subject,
40402 version, 40403 schema not found, 409 incompatible, 42201 invalid schema, 42202 invalid version, 42203 invalid
compatibility level). State: registry_store; compatibility: registry_compat (Apache Avro's checker).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushpipe.simulators.registry_store import Refusal, Store

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_PORT = 18481


class Answer(JSONResponse):
    media_type = MEDIA_TYPE


def refused(request: Request, exc: Exception) -> Response:
    if isinstance(exc, Refusal):
        return Answer({"error_code": exc.error_code, "message": exc.message}, status_code=exc.status)
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return Answer({"error_code": status, "message": f"HTTP {status} {getattr(exc, 'detail', '')}".strip()}, status_code=status)


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter: confluent-kafka sends Python's True/False, curl users true/false."""
    return request.query_params.get(name, "").lower() == "true"


async def body(request: Request) -> dict[str, Any]:
    try:
        doc = json.loads(await request.body())
    except ValueError as bad:
        raise Refusal(400, 400, f"Unrecognized request body: {bad}") from None
    if not isinstance(doc, dict):
        raise Refusal(422, 42201, "Invalid schema: the request body must be a JSON object with \"schema\"")
    return doc


class Registry:
    """The routes over one Store (async handlers on one event loop: requests change the store one at a time)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(self, request: Request) -> Response:
        return Answer({"id": self.store.register(request.path_params["subject"], await body(request))})

    async def lookup(self, request: Request) -> Response:
        return Answer(self.store.lookup(request.path_params["subject"], await body(request), flag(request, "deleted")))

    async def subjects(self, request: Request) -> Response:
        return Answer(self.store.subject_names(flag(request, "deleted")))

    async def versions(self, request: Request) -> Response:
        return Answer([v.version for v in self.store.versions(request.path_params["subject"], flag(request, "deleted"))])

    async def version(self, request: Request) -> Response:
        subject = request.path_params["subject"]
        return Answer(self.store.document(subject, self.store.version(subject, request.path_params["version"], flag(request, "deleted"))))

    async def version_schema(self, request: Request) -> Response:
        found = self.store.version(request.path_params["subject"], request.path_params["version"], flag(request, "deleted"))
        return Response(self.store.schema(found.schema_id), media_type=MEDIA_TYPE)

    async def delete_subject(self, request: Request) -> Response:
        return Answer(self.store.delete_subject(request.path_params["subject"], flag(request, "permanent")))

    async def schema(self, request: Request) -> Response:
        return Answer({"schema": self.store.schema(request.path_params["schema_id"])})

    async def schema_types(self, request: Request) -> Response:
        return Answer(["AVRO"])

    async def get_config(self, request: Request) -> Response:
        level = self.store.compatibility(request.path_params.get("subject"), flag(request, "defaultToGlobal"))
        return Answer({"compatibilityLevel": level})

    async def put_config(self, request: Request) -> Response:
        return Answer({"compatibility": self.store.set_compatibility(request.path_params.get("subject"), await body(request))})

    async def delete_config(self, request: Request) -> Response:
        return Answer({"compatibilityLevel": self.store.delete_compatibility(request.path_params["subject"])})

    async def compatibility(self, request: Request) -> Response:
        found = self.store.test(request.path_params["subject"], request.path_params.get("version"), await body(request))
        return Answer({"is_compatible": not found, **({"messages": found} if flag(request, "verbose") else {})})

    async def root(self, request: Request) -> Response:
        return Answer({})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, **self.store.counts()})


def create(store: Store) -> Starlette:
    r = Registry(store)
    routes = [
        Route("/", r.root), Route("/health", r.health),
        Route("/subjects", r.subjects),
        Route("/subjects/{subject}", r.lookup, methods=["POST"]),
        Route("/subjects/{subject}", r.delete_subject, methods=["DELETE"]),
        Route("/subjects/{subject}/versions", r.versions, methods=["GET"]),
        Route("/subjects/{subject}/versions", r.register, methods=["POST"]),
        Route("/subjects/{subject}/versions/{version}", r.version),
        Route("/subjects/{subject}/versions/{version}/schema", r.version_schema),
        Route("/schemas/ids/{schema_id:int}", r.schema), Route("/schemas/types", r.schema_types),
        Route("/config", r.get_config, methods=["GET"]), Route("/config", r.put_config, methods=["PUT"]),
        Route("/config/{subject}", r.get_config, methods=["GET"]), Route("/config/{subject}", r.put_config, methods=["PUT"]),
        Route("/config/{subject}", r.delete_config, methods=["DELETE"]),
        Route("/compatibility/subjects/{subject}/versions", r.compatibility, methods=["POST"]),
        Route("/compatibility/subjects/{subject}/versions/{version}", r.compatibility, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={Refusal: refused, HTTPException: refused})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pushpipe.simulators.schema_registry", description="A Confluent Schema Registry simulator.")
    parser.add_argument("--state", type=Path, required=True, help="the JSON file that keeps subjects, schemas and levels")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    store = Store(args.state.resolve())
    print(f"schema registry simulator: http://{args.host}:{args.port} state {store.path} {store.counts()}", flush=True)
    uvicorn.run(create(store), host=args.host, port=args.port, access_log=False, loop="uvloop", http="httptools", log_level="warning")
    return 0


if __name__ == "__main__":
    from pushpipe.simulators import schema_registry as _canonical  # run the importable module, not a __main__ copy

    raise SystemExit(_canonical.main())
