"""Machinery shared by the batch-vendor simulators (Xiaomi, OPPO, vivo, Meizu, Umeng).

A `BatchVendorSim` subclass names its routes and answers each request in a pure `handle()`; this
module adds what they share: latency, outage (HTTP 503 before anything else, like a vendor's gateway),
the injected faults in one order (503, then the vendor's throttle answer, then its daily cap),
recording per token, dev credentials, and receipts POSTed in the background.

Receipts: every simulator that has them queues `Receipt`s on its `ReceiptOutbox`, which POSTs them
to `SimConfig.receipt_url` about once a second (Xiaomi and Meizu document that cadence), encoded by
the vendor module. Best effort, as vendors do: a failed POST is counted and dropped, never retried.
A delivery receipt goes only for the devices the push reached (simulators/population.py), when it
reached each; a device with notifications off gets a SWITCHED_OFF receipt instead where the vendor's
receipts can say so (`switched_off_receipts`: Xiaomi), else none.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self
from urllib.parse import parse_qsl

import httpx

from pushpipe.simulators import population
from pushpipe.simulators.common import Accepted, Receive, Scope, Send, SimState, header_map, post_ok, read_body, respond, retry_after
from pushpipe.simulators.oauth import write_private

Fault = Literal["unavailable", "throttled", "daily"]
_MAX_TOKENS = 10_000
Encoded = tuple[bytes, str]  # (body, content-type) of one receipt POST


class Request(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    url: str  # scheme://host/path, without the query (what Umeng signs)


DELIVERED = 1  # a Receipt's kind for a delivery
SWITCHED_OFF = -1  # a Receipt's kind for a delivery to a device whose notifications are off (Xiaomi: barStatus "Disable")


@dataclass(frozen=True)
class Receipt:
    kind: int  # 1 delivered, 2 clicked, 16 invalid target, SWITCHED_OFF (the vendor module maps it to its own code)
    msg_id: str
    param: str  # the sender's callback parameter (our msg_id)
    tokens: tuple[str, ...]
    at: float
    url: str = ""  # the callback URL the send carried; "" = the simulator's receipt_url (a console setting)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    receipts: tuple[Receipt, ...] = ()


def json_reply(doc: Any, status: int = 200, receipts: tuple[Receipt, ...] = ()) -> Reply:
    return Reply(status, json.dumps(doc, ensure_ascii=False).encode(), receipts=receipts)


def unavailable() -> Reply:
    return json_reply({"error": "ServiceUnavailable"}, 503)


def too_many_requests(retry_after_s: int) -> Reply:
    return Reply(429, b'{"error":"TooManyRequests"}', retry_after(retry_after_s))


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(10)


def ensure_credentials(directory: Path, make: Callable[[], dict[str, str]]) -> dict[str, str]:
    """directory/credentials.json (mode 0600): reused if present, else `make()` written there."""
    path = directory / "credentials.json"
    if path.exists():
        doc: dict[str, str] = json.loads(path.read_text())
        return doc
    creds = make()
    write_private(path, json.dumps(creds, indent=2) + "\n")
    return creds


class AuthTokens:
    """Auth tokens one vendor issues (OPPO auth_token, vivo authToken), each valid for lifetime_s,
    or for SimConfig.auth_token_ttl_s when that is set (0 makes every token expire at once)."""

    def __init__(self, state: SimState, lifetime_s: float, clock: Callable[[], float]) -> None:
        self._state, self.lifetime_s, self._clock = state, lifetime_s, clock
        self._issued: dict[str, tuple[str, float]] = {}  # token -> (app, expires_at)

    def issue(self, app: str) -> str:
        now = self._clock()
        if len(self._issued) >= _MAX_TOKENS:
            self._issued = {t: v for t, v in self._issued.items() if v[1] > now}
        token = secrets.token_hex(20)
        ttl = self._state.config.auth_token_ttl_s
        self._issued[token] = (app, now + (self.lifetime_s if ttl is None else ttl))
        return token

    def check(self, token: str) -> str | None:
        """The app the token was issued to, or None if it is unknown or expired."""
        app, expires_at = self._issued.get(token, ("", 0.0))
        return app if app and self._clock() < expires_at else None


# ---- receipts --------------------------------------------------------------------------------------

@dataclass
class ReceiptOutbox:
    """Receipts owed by one simulator; POSTed to their URL in the background every interval_s."""

    encode: Callable[[list[Any]], list[Encoded]]  # a vendor's receipts -> the bodies to POST
    interval_s: float = 1.0
    timeout_s: float = 5.0
    posted: int = 0  # POSTs the receiver answered 2xx
    failed: int = 0  # POSTs dropped (error status or transport failure)
    _pending: list[tuple[float, str, Any]] = field(default_factory=list)  # (due, url, receipt)
    _task: asyncio.Task[None] | None = None

    def add(self, url: str, timed: Iterable[tuple[float, Any]]) -> None:
        """Queue (delay_s, receipt)s for the callback URL their send carried, else for `url`, each to go delay_s
        from now; call from the event loop. Receipts with neither URL are dropped (the sender asked for none)."""
        now = time.time()
        queued = [(now + delay_s, target, r) for delay_s, r in timed if (target := getattr(r, "url", "") or url)]
        if not queued:
            return
        self._pending.extend(queued)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while self._pending:
                await asyncio.sleep(self.interval_s)
                now = time.time()
                batch = [(url, r) for due, url, r in self._pending if due <= now]
                self._pending = [p for p in self._pending if p[0] > now]
                for url, group in _by_url(batch).items():
                    for body, content_type in self.encode(group):
                        await self._post(client, url, body, content_type)

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes, content_type: str) -> None:
        if await post_ok(client, url, body, {"content-type": content_type}):
            self.posted += 1
        else:
            self.failed += 1


def _by_url(batch: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for url, receipt in batch:
        grouped[url].append(receipt)
    return grouped


def group_receipts(receipts: list[Receipt]) -> dict[tuple[str, int], Receipt]:
    """Merge receipts of the same message and kind (vendors report targets per message and type)."""
    merged: dict[tuple[str, int], Receipt] = {}
    for r in receipts:
        key = (r.msg_id, r.kind)
        prior = merged.get(key)
        merged[key] = r if prior is None else Receipt(r.kind, r.msg_id, r.param, prior.tokens + r.tokens, r.at, r.url)
    return merged


# ---- the simulator ---------------------------------------------------------------------------------

Route = Callable[[Request, float], Reply]


class BatchVendorSim:
    """A VendorSim (simulators.common) for a vendor that takes many tokens per request."""

    name: str
    prefixes: tuple[str, ...]
    auth_paths: ClassVar[frozenset[str]] = frozenset()  # token endpoints: no latency, no faults
    switched_off_receipts: ClassVar[bool] = False  # its delivery receipts can say "notifications off" (SWITCHED_OFF)

    def __init__(self, state: SimState | None = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state or SimState()
        self._clock = clock
        self.outbox = ReceiptOutbox(self.encode_receipts)
        self.users = population.SimulatedApps(self.state)

    # -- to override --------------------------------------------------------------------------------
    def routes(self) -> Mapping[str, Route]:
        raise NotImplementedError

    def encode_receipts(self, receipts: list[Receipt]) -> list[Encoded]:
        return []

    def register_credentials(self, creds: Mapping[str, str]) -> None:
        raise NotImplementedError

    def register_key(self, body: Mapping[str, Any]) -> None:
        """POST /keys: register another app (the same fields as credentials.json)."""
        self.register_credentials({k: str(v) for k, v in body.items() if k != "vendor"})

    @classmethod
    def create(cls, state_dir: Path) -> Self:
        """A simulator with its dev credentials (state_dir/<name>/credentials.json) registered."""
        sim = cls()
        sim.register_credentials(ensure_credentials(state_dir / cls.name, cls.new_credentials))
        return sim

    @staticmethod
    def new_credentials() -> dict[str, str]:
        """Fresh dev credentials: exactly the vendor config's credential fields."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _request(scope, await read_body(receive))
        if request.path not in self.auth_paths:
            await self.state.lag()
        reply = self.handle(request)
        await respond(send, reply.status, reply.body, reply.headers)
        self.outbox.add(self.state.config.receipt_url, self.reached(reply.receipts))

    def reached(self, receipts: tuple[Receipt, ...]) -> list[tuple[float, Receipt]]:
        """(delay_s, receipt) for what reached the devices (population.fate): a delivery receipt for each arrival
        time, SWITCHED_OFF for devices with notifications off if the vendor says so; their apps open and click some.
        Other receipts (invalid targets) go after the vendor's delivery_delay_ms."""
        out: list[tuple[float, Receipt]] = []
        for r in receipts:
            if r.kind != DELIVERED:
                out.append((self.state.config.delivery_delay_ms / 1000, r))
                continue
            fates = self.users.fates(r.param, r.tokens)
            self.users.engage(population.app_of_callback(r.url), r.param, fates, time.time())
            groups: dict[tuple[int, float], list[str]] = {}
            for token, what in fates.items():
                kind = DELIVERED if what.delivered else SWITCHED_OFF if what.switched_off and self.switched_off_receipts else 0
                if kind:
                    groups.setdefault((kind, what.delay_ms), []).append(token)
            out += [(delay_ms / 1000, replace(r, kind=kind, tokens=tuple(tokens), at=r.at + delay_ms / 1000))
                    for (kind, delay_ms), tokens in groups.items()]
        return out

    def targets(self, request: Request) -> list[str]:
        """The device tokens a request is for ([] for auth and save steps)."""
        return []

    def handle(self, request: Request) -> Reply:
        """Decide the reply for one request and record its tokens as received (no I/O)."""
        reply = self._route(request, self._clock())
        self.state.recorder.received.extend((t, reply.status) for t in self.targets(request))
        return reply

    def _route(self, request: Request, now: float) -> Reply:
        route = self.routes().get(request.path)
        if route is None:
            return json_reply({"error": f"no such API {request.path}"}, 404)
        if request.method != "POST":
            return json_reply({"error": "MethodNotAllowed"}, 405)
        if request.path not in self.auth_paths and self.state.in_outage(now):
            return unavailable()
        return route(request, now)

    def fault(self, now: float, tokens: int, daily: bool = True) -> Fault | None:
        """The injected fault for a send of `tokens` tokens, if any; the daily quota counts passes."""
        if self.state.roll_unavailable():
            return "unavailable"
        if self.state.roll_throttled(now):
            return "throttled"
        if daily and self.state.over_daily_quota(now, tokens):
            return "daily"
        return None

    def record(self, accepted: list[str], msg_id: str, payload: Any, now: float) -> None:
        """The accepted tokens with the message they got (`handle` records every token as received)."""
        raw = json.dumps(payload, ensure_ascii=False).encode() if self.state.config.record_payloads else b""
        self.state.recorder.accepted.extend(Accepted(t, msg_id, raw, now) for t in accepted)

    def split(self, tokens: list[str], well_formed: Callable[[str], bool]) -> tuple[list[str], list[str], list[str]]:
        """(accepted, unregistered, malformed) in request order."""
        dead = self.state.config.unregistered_tokens
        malformed = [t for t in tokens if not well_formed(t)]
        unregistered = [t for t in tokens if well_formed(t) and t in dead]
        accepted = [t for t in tokens if well_formed(t) and t not in dead]
        return accepted, unregistered, malformed


def _request(scope: Scope, body: bytes) -> Request:
    headers = header_map(scope)
    host = headers.get("host") or ":".join(str(p) for p in scope.get("server") or ("localhost", ""))
    query = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
    return Request(scope["method"], scope["path"], query, headers, body,
                   f"{scope.get('scheme', 'https')}://{host}{scope['path']}")
