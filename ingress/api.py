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

HTTP: plain ASGI (ingress/asgi.py says why: Starlette's layers were half of a send's CPU) on uvicorn (httptools,
uvloop), chosen by bench/asgi_choice.py (the same send endpoint, JSON parsed and validated and a no-op produce, in each
framework's own way; load from another process); the OpenAPI document is written by hand (ingress/openapi.py).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram, generate_latest

from pushpipe.config import Settings
from pushpipe.ingress import asgi, openapi, shapes, status
from pushpipe.ingress.asgi import Call, Reply
from pushpipe.ingress.auth import APP_HEADER, Authenticator, Refusal
from pushpipe.ingress.limits import Buckets, retry_after
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import App, AppStore

log = logging.getLogger(__name__)
Record = tuple[str, bytes, bytes]  # (topic, key, value), as gateway/outbox.py takes them
Handler = Callable[[Call], Awaitable[Reply]]

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


def json_reply(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(doc), headers or {})


def refusal(refused: Refused) -> Reply:
    shown: dict[str, Any] = {"error": refused.error, "reason": refused.reason}
    if refused.fields:
        shown["fields"] = refused.fields
    return json_reply(shown, refused.status, refused.headers)


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

    async def push(self, call: Call) -> Reply:
        app = await self._caller(call)
        doc = self._json(call)
        record = self._parsed(lambda: shapes.push_request(doc, app, self._now_ms(), header_id=call.headers.get("idempotency-key", "")))
        return await self._send_pushes(app, [record])

    async def push_batch(self, call: Call) -> Reply:
        app = await self._caller(call)
        doc = self._json(call)
        records = self._parsed(lambda: shapes.push_batch(doc, app, call.headers.get("idempotency-key", ""), self._now_ms(),
                                                         self.settings.api_max_batch))
        return await self._send_pushes(app, records)

    async def device(self, kind: str, call: Call) -> Reply:
        app = await self._caller(call)
        doc = self._json(call)
        event = self._parsed(lambda: shapes.device_event(doc, app, kind, self._now_ms()))
        await self._send([(self.topics.device_events, keys.device_key(app.app_id, event["token"]).encode(), codec.encode("DeviceEvent", event))])
        return json_reply({"accepted": kind}, 202)

    async def preference(self, call: Call) -> Reply:
        app = await self._caller(call)
        doc = self._json(call)
        event = self._parsed(lambda: shapes.preference_event(doc, app, self._now_ms()))
        await self._send([(self.topics.preferences, keys.preference_key(event).encode(), codec.encode("PreferenceEvent", event))])
        return json_reply({"accepted": event["kind"]}, 202)

    async def message(self, call: Call) -> Reply:
        app = await self._caller(call)
        msg_id = call.params["msg_id"]
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
        return json_reply(status.view(doc))

    # --- steps ---------------------------------------------------------------------------------------------

    async def _caller(self, call: Call) -> App:
        found = await self.auth.caller(call.headers.get(APP_HEADER), call.headers.get("authorization"))
        if isinstance(found, Refusal):
            headers = {"Retry-After": retry_after(found.retry_after_s)} if found.status == 429 else None
            raise Refused(found.status, found.error, found.reason, headers=headers)
        if call.params["app"] != found.app_id:
            raise Refused(403, "forbidden", f"these credentials are app {found.app_id}'s; they cannot act for another app")
        return found

    @staticmethod
    def _json(call: Call) -> Any:
        try:
            return orjson.loads(call.body)
        except orjson.JSONDecodeError as bad:
            raise Refused(400, "invalid", f"the body is not JSON: {bad}", {"body": "must be JSON"}) from None

    @staticmethod
    def _parsed(make: Callable[[], Any]) -> Any:
        try:
            return make()
        except shapes.Invalid as bad:
            raise Refused(400, "invalid", f"{len(bad.fields)} field(s) are not right: nothing was queued", bad.fields) from None

    async def _send_pushes(self, app: App, records: list[dict[str, Any]]) -> Reply:
        wait_s = self.rates.take(app.app_id, app.rate_per_s, len(records))
        if wait_s:
            raise Refused(429, "rate_limited", f"app {app.app_id} may send {app.rate_per_s:g} pushes/s", headers={"Retry-After": retry_after(wait_s)})
        await self._send([(self.topics.requests, keys.message_key(app.app_id, r["msg_id"]).encode(), codec.encode("PushRequest", r))
                          for r in records])
        self._pushes(app.app_id).inc(len(records))
        return json_reply({"msg_ids": [r["msg_id"] for r in records]}, 202)

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


@dataclass(frozen=True)
class Route:
    """`method` on a path of `parts`, where "{name}" takes any one part as a parameter."""

    method: str
    parts: tuple[str, ...]
    name: str
    handler: Handler

    @property
    def path(self) -> str:
        return "/".join(self.parts)

    def params(self, parts: list[str]) -> dict[str, str] | None:
        """The path's parameters if it is this route's path, else None."""
        if len(parts) != len(self.parts):
            return None
        found = {}
        for mine, given in zip(self.parts, parts, strict=True):
            if mine[:1] == "{":
                if not given:
                    return None
                found[mine[1:-1]] = given
            elif mine != given:
                return None
        return found


class HttpApi:
    """The API as an ASGI app: each request matched to a route by its path, its body read (up to api_max_body_bytes)
    for a POST, answered by the route's handler; counted and timed per route. Paths of no route answer 404, a route's
    path with another method 405, both as JSON."""

    def __init__(self, routes: list[Route], max_body_bytes: int, max_batch: int, on_shutdown: Callable[[], Awaitable[None]]) -> None:
        self.routes, self.max_body_bytes, self.max_batch, self.on_shutdown = routes, max_body_bytes, max_batch, on_shutdown
        self._counted = {route.name: Counted(route.name) for route in routes}

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] == "lifespan":
            await asgi.lifespan(receive, send, self.on_shutdown)
            return
        if scope["type"] != "http":  # websockets are not served (uvicorn runs with ws="none")
            return
        await asgi.answer(send, await self._serve(scope, receive))

    async def _serve(self, scope: asgi.Scope, receive: asgi.Receive) -> Reply:
        parts, method = scope["path"].split("/"), scope["method"]
        on_path = False
        for route in self.routes:
            params = route.params(parts)
            if params is None:
                continue
            if route.method != method and not (route.method == "GET" and method == "HEAD"):
                on_path = True
                continue
            return await self._counted[route.name].answer(route.handler, lambda: self._call(route, scope, receive, params))
        return unrouted(scope, 405 if on_path else 404)

    async def _call(self, route: Route, scope: asgi.Scope, receive: asgi.Receive, params: dict[str, str]) -> Call:
        headers = asgi.headers_of(scope)
        if route.method != "POST":
            return Call(params, headers)
        try:
            return Call(params, headers, await asgi.read_body(receive, headers, self.max_body_bytes))
        except asgi.TooLarge:
            raise Refused(413, "too_large", f"the body is over {self.max_body_bytes} bytes"
                          + (f"; send at most {self.max_batch} pushes a batch" if route.name == "push_batch" else "")) from None


class Counted:
    """A route's counters: answers by status, refusals and failures by error, and its latency."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.latency = LATENCY.labels(route)
        self._answered: dict[int, Any] = {}  # status -> its counter (labels() looks up under a lock: ~5 µs a call)

    async def answer(self, handler: Handler, read: Callable[[], Awaitable[Call]]) -> Reply:
        """The handler's reply to the call `read` makes, timed and counted; refusals answered as JSON, anything
        unexpected as a 500 without details."""
        started = time.perf_counter()
        reply = await self._guarded(handler, read)
        counter = self._answered.get(reply.status)
        if counter is None:
            counter = self._answered[reply.status] = REQUESTS.labels(self.route, str(reply.status))
        counter.inc()
        self.latency.observe(time.perf_counter() - started)
        return reply

    async def _guarded(self, handler: Handler, read: Callable[[], Awaitable[Call]]) -> Reply:
        try:
            return await handler(await read())
        except Refused as refused:
            ERRORS.labels(self.route, refused.error).inc()
            return refusal(refused)
        except Exception:  # the log has the traceback; the caller gets none
            log.exception("%s failed", self.route)
            ERRORS.labels(self.route, "internal").inc()
            return json_reply({"error": "internal", "reason": "the API failed to answer; it is logged"}, 500)


def unrouted(scope: asgi.Scope, code: int) -> Reply:
    """404 and 405 of paths and methods the API has no route for, as JSON."""
    error = {404: "not_found", 405: "method_not_allowed"}[code]
    ERRORS.labels("unrouted", error).inc()
    return json_reply({"error": error, "reason": f"{scope['method']} {scope['path'][:200]}: no such route (see /openapi.json)"}, code)


def create(settings: Settings, apps: AppStore, outbox: Sender, messages: status.MessageReader, ready: Callable[[], bool] = lambda: True,
           **seams: Any) -> HttpApi:
    """The API app; `ready` says whether the app registry is loaded (/health), `seams` go to Api (rates, auth, clock)."""
    api = Api(settings, apps, outbox, messages, **seams)
    document = Reply(200, orjson.dumps(openapi.document(settings)))

    async def health(call: Call) -> Reply:
        return json_reply({"ok": ready(), "apps": len(apps.all())}, 200 if ready() else 503)

    async def metrics(call: Call) -> Reply:
        return Reply(200, generate_latest(), media_type=b"text/plain; version=0.0.4")

    async def openapi_json(call: Call) -> Reply:
        return document

    async def closing() -> None:
        await messages.close()
        outbox.close()

    app = ("", "v1", "apps", "{app}")
    routes = [Route("POST", (*app, "push"), "push", api.push),
              Route("POST", (*app, "push", "batch"), "push_batch", api.push_batch),
              *(Route("POST", (*app, "devices", kind), f"device_{kind}", partial(api.device, kind)) for kind in shapes.DEVICE_KINDS),
              Route("POST", (*app, "preferences"), "preferences", api.preference),
              Route("GET", (*app, "messages", "{msg_id}"), "message", api.message),
              Route("GET", ("", "openapi.json"), "openapi", openapi_json), Route("GET", ("", "health"), "health", health),
              Route("GET", ("", "metrics"), "metrics", metrics)]
    return HttpApi(routes, settings.api_max_body_bytes, settings.api_max_batch, closing)
