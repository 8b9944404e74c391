"""The receipt gateway: vendors' receipt callbacks and apps' SDK events in, Receipt records on push.receipts out.

    POST /r/<vendor>/<app>/<sig>             a vendor's callback, in its own format (gateway/callbacks.py)
    POST /v1/sdk/<app>/events                an SDK's batch, header X-Pushpipe-Key (gateway/signing.py)
    GET  /health, GET /metrics

A request is answered 200 only after Kafka acknowledged every record it made (acks=all), so an
acknowledged receipt is never lost; a vendor that gets no answer, or a 503, sends it again, and the same
receipt twice has the same receipt_id (counted once downstream). What cannot be taken gets a 4xx with
the reason, is counted, and goes to push.dlq; the good receipts of a body beside a bad item still count.

Apps of the registry (schemas/apps.py, followed by a thread) have keys of their own (gateway/signing.py key_for);
until the registry is read, callbacks are answered 503 (sent again) rather than checked against a partial one.
With `app_registry_required`, an app not in it is refused 404 unknown_app, and a console callback's receipts
of such an app are refused items.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushpipe.config import Settings
from pushpipe.gateway import callbacks, signing
from pushpipe.gateway.callbacks import BadCallback, Heard, Problem
from pushpipe.gateway.outbox import Outbox, Record
from pushpipe.schemas import codec, keys, letters
from pushpipe.schemas.apps import AppLookup, MemoryApps

JOB = "gateway"
MAX_BODY_BYTES = 1024 * 1024
RECEIPTS_PER_RECORD = 1000  # ~250 KB of Avro: far below Kafka's 1 MiB record limit
# a sender's time outside these is taken as the gateway's (a device clock at 1970, or far ahead)
EARLIEST_TS_MS, LATEST_AHEAD_MS = 946_684_800_000, 86_400_000  # 2000-01-01; a day ahead
DEVICE_NEWS = {"invalid_target": "invalid_token", "switched_off": "switch_off"}  # receipt kind -> DeviceEvent kind
RECEIPTS = Counter("pushpipe_gateway_receipts_total", "Receipts written to push.receipts", ["source", "vendor", "kind"])
REFUSED = Counter("pushpipe_gateway_refused_total", "Callbacks, uploads and items refused, by reason", ["source", "reason"])
UNKNOWN_APP = "unknown_app"


class Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def receipt(heard: Heard, vendor: str, source: str, now_ms: int) -> dict[str, Any]:
    """The Receipt record of what was heard; its id is the same whenever the same receipt comes again."""
    same = keys.SEP.join((heard.app_id, heard.msg_id, heard.token, heard.kind, source))
    ts = heard.ts if EARLIEST_TS_MS <= heard.ts <= now_ms + LATEST_AHEAD_MS else now_ms  # a clock that cannot be right
    return codec.new_record(
        "Receipt", receipt_id=hashlib.sha256(same.encode()).hexdigest()[:32], msg_id=heard.msg_id, app_id=heard.app_id,
        vendor=vendor, token=heard.token, kind=heard.kind, code=heard.code, source=source, ts=ts, received_at=now_ms)


def receipt_batches(heard: list[Heard], vendor: str, source: str, now_ms: int) -> list[tuple[bytes, bytes]]:
    """(key, ReceiptBatch) per message: a body's receipts of one message travel as few records, of at most
    RECEIPTS_PER_RECORD each (a body of 1 MB of tokens would otherwise be a record over Kafka's limit)."""
    by_message: dict[str, list[dict[str, Any]]] = {}
    for h in heard:
        by_message.setdefault(keys.message_key(h.app_id, h.msg_id), []).append(receipt(h, vendor, source, now_ms))
    return [(key.encode(), codec.encode("ReceiptBatch", {"receipts": receipts[start:start + RECEIPTS_PER_RECORD]}))
            for key, receipts in by_message.items() for start in range(0, len(receipts), RECEIPTS_PER_RECORD)]


def device_news(heard: Heard, vendor: str, now_ms: int) -> bytes:
    """What a receipt says of the device, as a DeviceEvent for device.feedback: fan-out's shard of the token
    knows its pin and passes it on (jobs/fanout/shards.py receipt_owner), as with a vendor's dead-token answer."""
    return codec.encode("DeviceEvent", codec.new_record(
        "DeviceEvent", app_id=heard.app_id, pin="", token=heard.token, kind=DEVICE_NEWS[heard.kind], vendor=vendor,
        reason=f"receipt {vendor} {heard.code}", ts=now_ms))


class Gateway:
    def __init__(self, settings: Settings, key: bytes, outbox: Outbox, apps: AppLookup, ready: Callable[[], bool]) -> None:
        self.key, self.outbox, self.apps, self.ready = key, outbox, apps, ready
        self.required = settings.app_registry_required
        self.receipts_topic, self.dlq_topic = settings.topics.receipts, settings.topics.dlq
        self.feedback_topic = settings.topics.device_feedback

    async def vendor_callback(self, request: Request) -> Response:
        vendor, app = request.path_params["vendor"], request.path_params["app"]
        return await self._take(request, "vendor", vendor, lambda body: self._callback(request, vendor, app, body))

    async def sdk_upload(self, request: Request) -> Response:
        app = request.path_params["app"]
        return await self._take(request, "sdk", "", lambda body: self._sdk(request, app, body))

    def _callback(self, request: Request, vendor: str, app: str, body: bytes) -> tuple[str, callbacks.Parsed]:
        if vendor not in callbacks.READERS:
            raise Refused(404, "unknown_vendor", f"no receipt callbacks from vendor {vendor[:40]!r}")
        app_id, key = ("", self.key) if app == signing.CONSOLE else self._app(app)
        if not signing.valid(signing.signature(key, vendor, app_id), request.path_params["sig"]):
            raise Refused(401, "bad_signature", f"the URL's signature is not the one pushpipe gave {vendor} for this app")
        parsed = callbacks.parse(vendor, body, request.headers.get("content-type", ""), app_id)
        return app_id, self._registered_only(parsed) if self.required and not app_id else parsed

    def _sdk(self, request: Request, app: str, body: bytes) -> tuple[str, callbacks.Parsed]:
        app_id, key = self._app(app)
        if not signing.valid(signing.sdk_key(key, app_id), request.headers.get("x-pushpipe-key", "")):
            raise Refused(401, "bad_key", "X-Pushpipe-Key is missing or not this app's SDK key")
        return app_id, callbacks.sdk_events(body, app_id)

    def _app(self, app: str) -> tuple[str, bytes]:
        """The app of a URL, and the key its signatures are made with (its own once registered)."""
        try:
            keys.check_app_id(app)
        except keys.InvalidId as bad:
            raise Refused(404, UNKNOWN_APP, str(bad)) from None
        registered = self.apps.get(app)
        if registered is None and self.required:
            raise Refused(404, UNKNOWN_APP, f"app {app!r} is not in the app registry, and only registered apps are served")
        return app, signing.key_for(self.key, registered)

    def _registered_only(self, parsed: callbacks.Parsed) -> callbacks.Parsed:
        """A console callback's receipts of apps in the registry; those of any other app are a refused item per app."""
        heard, problems = parsed
        strangers = Tally(h.app_id for h in heard if self.apps.get(h.app_id) is None)
        refused = [Problem(f"app {app_id}", f"{UNKNOWN_APP}: {n} receipt(s) of an app not in the app registry")
                   for app_id, n in sorted(strangers.items())]
        return [h for h in heard if h.app_id not in strangers], problems + refused

    async def _take(self, request: Request, source: str, vendor: str,
                    read: Callable[[bytes], tuple[str, callbacks.Parsed]]) -> Response:
        if not self.ready():
            return JSONResponse({"error": "unavailable", "reason": "the app registry is still being read: send again soon"}, 503)
        body = await request.body()
        where = f"http:{request.url.path.rsplit('/', 1)[0] if source == 'vendor' else request.url.path}"
        try:
            if len(body) > MAX_BODY_BYTES:
                raise Refused(413, "too_large", f"the body is {len(body)} bytes, at most {MAX_BODY_BYTES}")
            try:
                app_id, (heard, problems) = read(body)
            except BadCallback as bad:
                raise Refused(400, "malformed", str(bad)) from None
        except Refused as refused:
            REFUSED.labels(source, refused.reason).inc()
            await self._send([self._letter(where, body, refused.reason, refused.detail, request.path_params.get("app", ""))])
            return JSONResponse({"error": refused.reason, "reason": refused.detail}, refused.status)
        now = int(time.time() * 1000)
        sender = vendor or source
        records = [(self.receipts_topic, key, value) for key, value in receipt_batches(heard, vendor, source, now)]
        if problems:  # one dead letter for the body's bad items, each named with its reason
            listed = "; ".join(f"{p.item}: {p.reason}" for p in problems)
            records.append(self._letter(where, body, "bad_item", f"{len(problems)} of the body's items refused: {listed}", app_id))
        records += [(self.feedback_topic, keys.device_key(h.app_id, h.token).encode(), device_news(h, vendor, now))
                    for h in heard if h.kind in DEVICE_NEWS]
        if not await self._send(records):
            return JSONResponse({"error": "unavailable", "reason": "Kafka did not take the receipts: send them again"}, 503)
        for kind, n in Tally(h.kind for h in heard).items():  # counted first: a labels() lookup per receipt was 1.5 µs
            RECEIPTS.labels(source, sender, kind).inc(n)
        for reason, n in Tally(UNKNOWN_APP if p.reason.startswith(UNKNOWN_APP) else "bad_item" for p in problems).items():
            REFUSED.labels(source, reason).inc(n)
        return JSONResponse({"accepted": len(heard), "refused": [_shown(p) for p in problems]})

    def _letter(self, where: str, body: bytes, error: str, reason: str, app_id: str) -> Record:
        return self.dlq_topic, b"", letters.dead_letter(JOB, where, body, error, reason, app_id=app_id)

    async def _send(self, records: list[Record]) -> bool:
        try:
            await self.outbox.send(records)
        except KafkaException:
            return False
        return True


def _shown(problem: Problem) -> dict[str, str]:
    return {"item": problem.item, "reason": problem.reason}


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type="text/plain; version=0.0.4")


def create(settings: Settings, key: bytes, outbox: Outbox, apps: AppLookup | None = None,
           ready: Callable[[], bool] = lambda: True, closing: Callable[[], None] = lambda: None) -> Starlette:
    """The gateway's app; `apps` is the app registry (None: empty), `ready` whether it has been read, `closing` ends it."""
    gateway = Gateway(settings, key, outbox, apps if apps is not None else MemoryApps(), ready)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": ready()}, 200 if ready() else 503)

    routes: list[Any] = [
        Route("/r/{vendor}/{app}/{sig}", gateway.vendor_callback, methods=["POST"]),
        Route("/v1/sdk/{app}/events", gateway.sdk_upload, methods=["POST"]),
        Route("/health", health), Route("/metrics", metrics),
    ]
    return Starlette(routes=routes, lifespan=lambda _: _closing(outbox, closing))


@contextlib.asynccontextmanager
async def _closing(outbox: Outbox, closing: Callable[[], None]) -> AsyncIterator[None]:
    yield
    outbox.close()
    closing()
