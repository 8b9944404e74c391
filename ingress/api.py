"""The HTTP send and device API: apps send pushes, manage devices and preferences, and read a message's status.

    POST /v1/apps/{app}/push                       one push (a PushRequest in JSON) -> 202 {"msg_ids": [id]}
    POST /v1/apps/{app}/push/batch                 {"messages": [push, ...]}, 1 to api_max_batch -> 202 {"msg_ids": [...]}
    POST /v1/apps/{app}/devices/{bind|report|unbind|deregister}   a DeviceEvent -> 202
    POST /v1/apps/{app}/preferences                a PreferenceEvent (opt-out/in, unsubscribe, time zone, quiet hours) -> 202
    GET  /v1/apps/{app}/messages/{msg_id}          the message's state and lifecycle counts
    GET  /openapi.json, /health, /metrics

Every /v1 call names its app (X-Pushpipe-App) and secret (Authorization: Bearer ...); the path's app must be
that app (403 otherwise), so one app's credentials never reach another's messages, devices or users. A send is
answered 202 only once Kafka acknowledged every record (acks=all, idempotent producer: gateway/outbox.py), a
batch all or nothing; Idempotency-Key is the msg id (batch: "<key>-<i>"), so a resend after a 503 or a lost
answer is the same message, counted once downstream. Errors are {"error", "reason", "fields"?} and counted:
400 bad JSON or fields (each named, nothing queued), 401, 403, 404, 413 over api_max_body_bytes, 429 over the
app's rate (Retry-After), 503 Kafka or Elasticsearch not answering; never a stack trace, never a secret.

Framework and server: Starlette on uvicorn (httptools, uvloop), chosen by bench/asgi_choice.py (the same send
endpoint, JSON parsed and validated and a no-op produce, in each framework's own way; load from another process).
It spent the least CPU per request in every round (76 µs at 8,994 requests/s in the quietest, where Litestar with
msgspec took 122 µs, Starlette on granian 132 µs, FastAPI with pydantic 270 µs), took the most requests/s in 8 of
11 rounds (granian in 3), and in the quietest round held the lowest p99 paced at 3,000/s (6.5 ms; 37, 85, 128 ms).
On a 2-core machine that shares its cores with Kafka, CPU per request is what bounds the rate. It is what the
gateway runs on already, so no new dependency; the price is an OpenAPI document written by hand (ingress/openapi.py)
instead of generated.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushpipe.config import Settings
from pushpipe.ingress import openapi, shapes, status
from pushpipe.ingress.auth import APP_HEADER, Authenticator, Refusal
from pushpipe.ingress.limits import Buckets, retry_after
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import App, AppStore

log = logging.getLogger(__name__)
Record = tuple[str, bytes, bytes]  # (topic, key, value), as gateway/outbox.py takes them
Handler = Callable[[Request], Awaitable[Response]]

REQUESTS = Counter("pushpipe_api_requests_total", "API requests answered, by route and status", ["route", "status"])
ERRORS = Counter("pushpipe_api_errors_total", "API requests refused or failed, by route and error", ["route", "error"])
PUSHES = Counter("pushpipe_api_pushes_total", "Pushes acknowledged by Kafka and answered 202, by app", ["app"])
LATENCY = Histogram("pushpipe_api_request_seconds", "Time to answer an API request", ["route"],
                    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0))


class Sender(Protocol):
    """Kafka as the API uses it (gateway/outbox.py's Outbox): returns once every record is acknowledged, raises
    KafkaException if one failed or TimeoutError once the settings' api_ack_timeout_s passed."""

    async def send(self, records: list[Record]) -> None: ...

    def close(self) -> None: ...


class Refused(Exception):
    def __init__(self, status: int, error: str, reason: str, fields: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.fields, self.headers = status, error, reason, fields, headers


def refusal(refused: Refused) -> Response:
    shown: dict[str, Any] = {"error": refused.error, "reason": refused.reason}
    if refused.fields:
        shown["fields"] = refused.fields
    return JSONResponse(shown, refused.status, headers=refused.headers)


class Api:
    def __init__(self, settings: Settings, apps: AppStore, outbox: Sender, messages: status.MessageReader,
                 rates: Buckets | None = None, auth: Authenticator | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.apps, self.outbox, self.messages = settings, apps, outbox, messages
        self.topics = settings.topics
        self.rates = rates or Buckets()
        self.auth = auth or Authenticator(apps)
        self.clock = clock
        self._pushed: dict[str, Any] = {}  # app -> its counter of pushes

    # --- endpoints -----------------------------------------------------------------------------------------

    async def push(self, request: Request) -> Response:
        app = await self._caller(request)
        doc = await self._json(request)
        record = self._parsed(lambda: shapes.push_request(doc, app, self._now_ms(), header_id=request.headers.get("idempotency-key", "")))
        return await self._send_pushes(app, [record])

    async def push_batch(self, request: Request) -> Response:
        app = await self._caller(request)
        doc = await self._json(request)
        records = self._parsed(lambda: shapes.push_batch(doc, app, request.headers.get("idempotency-key", ""), self._now_ms(),
                                                         self.settings.api_max_batch))
        return await self._send_pushes(app, records)

    async def device(self, kind: str, request: Request) -> Response:
        app = await self._caller(request)
        doc = await self._json(request)
        event = self._parsed(lambda: shapes.device_event(doc, app, kind, self._now_ms()))
        await self._send([(self.topics.device_events, keys.device_key(app.app_id, event["token"]).encode(), codec.encode("DeviceEvent", event))])
        return JSONResponse({"accepted": kind}, 202)

    async def preference(self, request: Request) -> Response:
        app = await self._caller(request)
        doc = await self._json(request)
        event = self._parsed(lambda: shapes.preference_event(doc, app, self._now_ms()))
        await self._send([(self.topics.preferences, keys.preference_key(event).encode(), codec.encode("PreferenceEvent", event))])
        return JSONResponse({"accepted": event["kind"]}, 202)

    async def message(self, request: Request) -> Response:
        app = await self._caller(request)
        msg_id = request.path_params["msg_id"]
        try:
            keys.check_msg_id(msg_id)
        except keys.InvalidId as bad:
            raise Refused(400, "invalid", str(bad), {"msg_id": str(bad)}) from None
        try:
            doc = await self.messages.message(app.app_id, msg_id)
        except status.Unavailable as down:
            raise Refused(503, "unavailable", f"Elasticsearch did not answer ({down}): ask again") from None
        if doc is None:
            raise Refused(404, "not_found", f"app {app.app_id} has no message {msg_id!r}, or none of its results is counted yet")
        return JSONResponse(status.view(doc))

    # --- steps ---------------------------------------------------------------------------------------------

    async def _caller(self, request: Request) -> App:
        found = await self.auth.caller(request.headers.get(APP_HEADER), request.headers.get("authorization"))
        if isinstance(found, Refusal):
            headers = {"Retry-After": retry_after(found.retry_after_s)} if found.status == 429 else None
            raise Refused(found.status, found.error, found.reason, headers=headers)
        if request.path_params["app"] != found.app_id:
            raise Refused(403, "forbidden", f"these credentials are app {found.app_id}'s; they cannot act for another app")
        return found

    async def _json(self, request: Request) -> Any:
        limit = self.settings.api_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(request)
        body, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise self._too_large(request)
            body.append(chunk)
        try:
            return orjson.loads(b"".join(body))
        except orjson.JSONDecodeError as bad:
            raise Refused(400, "invalid", f"the body is not JSON: {bad}", {"body": "must be JSON"}) from None

    def _too_large(self, request: Request) -> Refused:
        batch = request.url.path.endswith("/batch")
        return Refused(413, "too_large", f"the body is over {self.settings.api_max_body_bytes} bytes"
                       + (f"; send at most {self.settings.api_max_batch} pushes a batch" if batch else ""))

    @staticmethod
    def _parsed(make: Callable[[], Any]) -> Any:
        try:
            return make()
        except shapes.Invalid as bad:
            raise Refused(400, "invalid", f"{len(bad.fields)} field(s) are not right: nothing was queued", bad.fields) from None

    async def _send_pushes(self, app: App, records: list[dict[str, Any]]) -> Response:
        wait_s = self.rates.take(app.app_id, app.rate_per_s, len(records))
        if wait_s:
            raise Refused(429, "rate_limited", f"app {app.app_id} may send {app.rate_per_s:g} pushes/s", headers={"Retry-After": retry_after(wait_s)})
        await self._send([(self.topics.requests, keys.message_key(app.app_id, r["msg_id"]).encode(), codec.encode("PushRequest", r))
                          for r in records])
        self._pushes(app.app_id).inc(len(records))
        return Response(orjson.dumps({"msg_ids": [r["msg_id"] for r in records]}), 202, media_type="application/json")

    async def _send(self, records: list[Record]) -> None:
        """Return once Kafka acknowledged every record; Refused 503 otherwise (then some may be written, none is promised)."""
        try:
            await self.outbox.send(records)  # it times out after api_ack_timeout_s (ingress/__main__.py)
        except (KafkaException, TimeoutError) as failed:
            log.warning("Kafka did not acknowledge %d record(s): %s", len(records), type(failed).__name__)
            raise Refused(503, "unavailable", "Kafka did not acknowledge it: send it again (with the same Idempotency-Key)",
                          headers={"Retry-After": "1"}) from None

    def _pushes(self, app_id: str) -> Any:
        counter = self._pushed.get(app_id)
        if counter is None:
            counter = self._pushed[app_id] = PUSHES.labels(app_id)
        return counter

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def counted(route: str, handler: Handler) -> Handler:
    """The handler, timed and counted, its refusals answered as JSON and anything unexpected as a 500 without details."""
    answered: dict[int, Any] = {}  # status -> the route's counter of it (labels() looks up under a lock: ~5 µs a call)
    latency = LATENCY.labels(route)

    async def answer(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except Refused as refused:
            ERRORS.labels(route, refused.error).inc()
            response = refusal(refused)
        except Exception:  # the log has the traceback; the caller gets none
            log.exception("%s failed", route)
            ERRORS.labels(route, "internal").inc()
            response = JSONResponse({"error": "internal", "reason": "the API failed to answer; it is logged"}, 500)
        counter = answered.get(response.status_code)
        if counter is None:
            counter = answered[response.status_code] = REQUESTS.labels(route, str(response.status_code))
        counter.inc()
        latency.observe(time.perf_counter() - started)
        return response
    return answer


async def not_routed(request: Request, exc: Exception) -> Response:
    """404 and 405 of paths and methods the API has no route for, as JSON."""
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    error = {404: "not_found", 405: "method_not_allowed"}.get(code, "error")
    ERRORS.labels("unrouted", error).inc()
    return JSONResponse({"error": error, "reason": f"{request.method} {request.url.path[:200]}: no such route (see /openapi.json)"}, code)


def create(settings: Settings, apps: AppStore, outbox: Sender, messages: status.MessageReader, ready: Callable[[], bool] = lambda: True,
           **seams: Any) -> Starlette:
    """The API app; `ready` says whether the app registry is loaded (/health), `seams` go to Api (rates, auth, clock)."""
    api = Api(settings, apps, outbox, messages, **seams)
    document = orjson.dumps(openapi.document(settings))

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": ready(), "apps": len(apps.all())}, 200 if ready() else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type="text/plain; version=0.0.4")

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes = [Route("/v1/apps/{app}/push", counted("push", api.push), methods=["POST"]),
              Route("/v1/apps/{app}/push/batch", counted("push_batch", api.push_batch), methods=["POST"]),
              *(Route(f"/v1/apps/{{app}}/devices/{kind}", counted(f"device_{kind}", partial(api.device, kind)), methods=["POST"])
                for kind in shapes.DEVICE_KINDS),
              Route("/v1/apps/{app}/preferences", counted("preferences", api.preference), methods=["POST"]),
              Route("/v1/apps/{app}/messages/{msg_id}", counted("message", api.message), methods=["GET"]),
              Route("/openapi.json", openapi_json), Route("/health", health), Route("/metrics", metrics)]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_routed}, lifespan=lambda _: _closing(outbox, messages))


@contextlib.asynccontextmanager
async def _closing(outbox: Sender, messages: status.MessageReader) -> AsyncIterator[None]:
    yield
    await messages.close()
    outbox.close()
