"""What every vendor simulator shares: ASGI types and helpers, the fault configuration and state, the record.

The vendor simulators (simulators/apns.py, fcm.py, ..., batchsim.py) import this module; the process
that serves them (simulators/server.py) imports them. Nothing here imports a vendor simulator or the server.
"""
from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import httpx

from pushpipe.simulators.devices import DeviceRegistry

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# ---- fault configuration, shared by all vendors -------------------------------------------------

def _rate(v: Any) -> float:
    f = float(v)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"rate must be within [0, 1], got {v!r}")
    return f


def _non_negative(v: Any) -> float:
    f = float(v)
    if f < 0:
        raise ValueError(f"must be >= 0, got {v!r}")
    return f


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _tokens(v: Any) -> frozenset[str]:
    if not isinstance(v, list | tuple | set | frozenset):
        raise ValueError("must be a list of tokens")
    return frozenset(str(t) for t in v)


@dataclass(frozen=True)
class Brand:
    """One phone brand's delivery, overriding the vendor-wide value where set (None = the vendor's)."""

    delivery_rate: float | None = None
    delivery_delay_ms: float | None = None


def _brands(v: Any) -> dict[str, Brand]:
    """{brand: {"delivery_rate"?, "delivery_delay_ms"?}}, brands in lower case; replaces every earlier override."""
    if not isinstance(v, Mapping):
        raise ValueError('must be an object {brand: {"delivery_rate", "delivery_delay_ms"}}')
    out: dict[str, Brand] = {}
    for name, fields in v.items():
        if isinstance(fields, Brand):
            fields = asdict(fields)
        if not isinstance(fields, Mapping) or set(fields) - {"delivery_rate", "delivery_delay_ms"}:
            raise ValueError(f'brand {name!r}: expected {{"delivery_rate", "delivery_delay_ms"}}, got {fields!r:.80}')
        out[str(name).lower()] = Brand(**{k: None if x is None else _COERCE[k](x) for k, x in fields.items()})
    return out


_COERCE: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _non_negative,
    "throttle_rate": _rate,
    "unavailable_rate": _rate,
    "retry_after_s": lambda v: int(_non_negative(v)),
    "outage": _bool,
    "quota_per_s": lambda v: int(_non_negative(v)),
    "unregistered_tokens": _tokens,
    "switched_off_tokens": _tokens,
    "daily_quota": lambda v: int(_non_negative(v)),
    "receipt_url": str,
    "delivery_rate": _rate,
    "delivery_delay_ms": _non_negative,
    "brands": _brands,
    "offline_rate": _rate,
    "offline_ms": _non_negative,
    "switched_off_rate": _rate,
    "open_rate": _rate,
    "click_rate": _rate,
    "open_delay_ms": _non_negative,
    "sdk_url": str,
    "access_token_ttl_s": lambda v: int(_non_negative(v)),
    "auth_token_ttl_s": lambda v: None if v is None else int(_non_negative(v)),
    "record_payloads": _bool,
    "seed": lambda v: None if v is None else int(v),
}


@dataclass(frozen=True)
class SimConfig:
    latency_ms: float = 0.0  # added before every API response
    throttle_rate: float = 0.0  # fraction answered 429 (with Retry-After)
    unavailable_rate: float = 0.0  # fraction answered 503
    retry_after_s: int = 1  # Retry-After on 429; 0 = omit the header
    outage: bool = False  # every request answered 503 until switched off
    quota_per_s: int = 0  # requests per wall-clock second before 429; 0 = unlimited
    unregistered_tokens: frozenset[str] = frozenset()  # tokens the vendor reports as dead
    switched_off_tokens: frozenset[str] = frozenset()  # notifications turned off (Meizu 110005)
    daily_quota: int = 0  # tokens per day (from 00:00 UTC+8) before the vendor's daily-cap code; 0 = no cap
    receipt_url: str = ""  # where vendors with delivery receipts POST them; "" = none
    # the population behind the vendor (simulators/population.py)
    delivery_rate: float = 1.0  # share of accepted pushes that reach their device (and get a receipt)
    delivery_delay_ms: float = 0.0  # from acceptance to the device (and its receipt)
    brands: dict[str, Brand] = field(default_factory=dict)  # per phone brand (devices.py): its own rate and delay
    offline_rate: float = 0.0  # share of devices offline for a while: their pushes arrive offline_ms later
    offline_ms: float = 0.0
    switched_off_rate: float = 0.0  # share of devices with notifications off (population.py: what each vendor says)
    open_rate: float = 0.0  # share of delivered pushes the app opens
    click_rate: float = 0.0  # share of opened pushes the user clicks through
    open_delay_ms: float = 0.0  # from delivery to the open
    sdk_url: str = ""  # where the apps post their SDK events (the receipt gateway); "" = they post none
    access_token_ttl_s: int = 3600  # real life of issued OAuth access tokens (expires_in still says 3600)
    auth_token_ttl_s: int | None = None  # real life of OPPO/vivo auth tokens; None = the vendor's 24 h
    record_payloads: bool = True
    seed: int | None = None  # for reproducible fault rolls

    def updated(self, changes: Mapping[str, Any]) -> SimConfig:
        unknown = set(changes) - set(_COERCE)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(_COERCE)}")
        return replace(self, **{k: _COERCE[k](v) for k, v in changes.items()})

    def to_json(self) -> dict[str, Any]:
        return {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(self).items()}

    def delivery(self, brand: str) -> tuple[float, float]:
        """(delivery_rate, delivery_delay_ms) for devices of this brand: its override, else the vendor-wide values."""
        own = self.brands.get(brand) if brand else None
        if own is None:
            return self.delivery_rate, self.delivery_delay_ms
        rate, delay = own.delivery_rate, own.delivery_delay_ms
        return (self.delivery_rate if rate is None else rate), (self.delivery_delay_ms if delay is None else delay)


@dataclass(frozen=True)
class Accepted:
    token: str
    msg_id: str  # the vendor's message id (APNs: apns-id)
    payload: bytes
    at: float


@dataclass
class Recorder:
    accepted: list[Accepted] = field(default_factory=list)
    received: list[tuple[str, int]] = field(default_factory=list)  # (token, HTTP status)

    def summary(self, prefix: str, payloads: bool, tokens: bool = True) -> dict[str, Any]:
        hits = [a for a in self.accepted if a.token.startswith(prefix)]
        out: dict[str, Any] = {"count": len(hits), "tokens": [a.token for a in hits] if tokens else [],
                               "first_at": min((a.at for a in hits), default=None),
                               "last_at": max((a.at for a in hits), default=None)}
        if payloads:
            out["records"] = [_record_json(a) for a in hits]
        return out

    def stats(self, prefix: str) -> dict[str, Any]:
        statuses = Counter(str(s) for t, s in self.received if t.startswith(prefix))
        return {"received": sum(statuses.values()), "by_status": dict(statuses)}


def _record_json(a: Accepted) -> dict[str, Any]:
    try:
        payload: Any = json.loads(a.payload) if a.payload else None
    except ValueError:
        payload = a.payload.decode(errors="replace")
    return {"token": a.token, "msg_id": a.msg_id, "payload": payload, "at": a.at}


class SimState:
    """Fault config, its runtime bits (outage window, quota window, RNG), the record, and the devices (one
    registry the server shares among its simulators; a reset leaves it alone: AdminApp clears it)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.devices = DeviceRegistry()
        self.home: dict[str, Any] = {}  # config set at start (server.py): what a reset returns to
        self.recorder = Recorder()
        self._rng = random.Random(self.config.seed)
        self._outage_until = 0.0
        self._window = (0, 0)  # (second, requests in it)
        self._daily = (0, 0)  # (UTC+8 day number, tokens counted in it)

    def configure(self, changes: Mapping[str, Any], now: float) -> None:
        """Apply a partial update; `outage_s: N` opens an outage window for N seconds."""
        changes = dict(changes)
        outage_s = _non_negative(changes.pop("outage_s", 0))
        self.config = self.config.updated(changes)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        if outage_s:
            self._outage_until = now + outage_s

    def reset(self, config: bool = True, records: bool = True) -> None:
        if config:
            self.config, self._outage_until, self._window = SimConfig().updated(self.home), 0.0, (0, 0)
            self._rng, self._daily = random.Random(), (0, 0)
        if records:
            self.recorder = Recorder()

    async def lag(self) -> None:
        """Wait the configured latency_ms (added before an API response)."""
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    def in_outage(self, now: float) -> bool:
        return self.config.outage or now < self._outage_until

    def roll_unavailable(self) -> bool:
        return self._rng.random() < self.config.unavailable_rate

    def roll_throttled(self, now: float) -> bool:
        return self._over_quota(now) or self._rng.random() < self.config.throttle_rate

    def _over_quota(self, now: float) -> bool:
        if not self.config.quota_per_s:
            return False
        second, count = self._window
        count = count + 1 if int(now) == second else 1
        self._window = (int(now), count)
        return count > self.config.quota_per_s

    def over_daily_quota(self, now: float, tokens: int) -> bool:
        """True if `tokens` more would pass daily_quota (days start 00:00 UTC+8); else count them."""
        if not self.config.daily_quota:
            return False
        day = int((now + 8 * 3600) // 86_400)
        used = self._daily[1] if self._daily[0] == day else 0
        if used + tokens > self.config.daily_quota:
            return True
        self._daily = (day, used + tokens)
        return False


# ---- ASGI plumbing -------------------------------------------------------------------------------

class VendorSim(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def prefixes(self) -> tuple[str, ...]:
        """API paths this simulator answers."""

    state: SimState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...

    def register_key(self, body: Mapping[str, Any]) -> None:
        """Register a credential (APNs: team_id, key_id, public_key PEM)."""


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def header_map(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def respond(send: Send, status: int, body: bytes = b"",
                  headers: tuple[tuple[str, str], ...] = ()) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    if body:
        raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def retry_after(seconds: int) -> tuple[tuple[str, str], ...]:
    """The Retry-After header of a reply; none for 0 seconds."""
    return (("retry-after", str(seconds)),) if seconds else ()


async def respond_json(send: Send, status: int, obj: Any) -> None:
    await respond(send, status, json.dumps(obj).encode())


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def post_ok(client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """POST as a vendor or an app posts a callback: True when the receiver answered 2xx, False on any failure."""
    try:
        return (await client.post(url, content=body, headers=dict(headers))).is_success
    except (httpx.HTTPError, OSError):
        return False
