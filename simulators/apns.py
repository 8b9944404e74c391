"""APNs provider API simulator: `POST /3/device/<token>` with Apple's headers, JWT auth and replies.

Checks run in Apple's order of concern: method, outage, provider token, headers, payload, device
token, then injected faults (503 / quota / 429), then accept and record. See VENDORS.md section 1.

APNs sends no receipts: the app on the device says what arrived. For a token registered with its app
(admin POST /devices) and with SimConfig.sdk_url set, an accepted alert (aps.mutable-content 1, so its
Notification Service Extension runs) that reaches the device is acked to the gateway as an SDK "delivered"
event, then opened and clicked as the population decides (simulators/population.py). Background pushes
show nothing and wake no extension: no events.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushpipe.connectors.dev_credentials import generate_p8, new_key_id, public_pem
from pushpipe.simulators import population
from pushpipe.simulators.common import Accepted, Receive, Scope, Send, SimState, header_map, read_body, respond, retry_after

TOKEN_MAX_AGE_S = 3600
PATH_PREFIX = "/3/device/"
PUSH_TYPES = frozenset({"alert", "background", "voip", "complication", "fileprovider", "mdm",
                        "liveactivity", "pushtotalk", "location", "widgets", "controls"})
PRIORITIES = frozenset({"10", "5", "1"})
_TOKEN_RE = re.compile(r"[0-9a-fA-F]{64}")
_JWT_CACHE_MAX = 4096
DEFAULT_TOPIC = "com.pushpipe.demo"


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str = ""
    retry_after_s: int = 0
    timestamp_ms: int = 0  # only on 410


@dataclass(frozen=True)
class ApnsCredentials:
    team_id: str
    key_id: str
    key_path: Path
    topic: str

    def public_pem(self) -> str:
        return public_pem(self.key_path.read_text())


def ensure_credentials(directory: Path, topic: str = DEFAULT_TOPIC) -> ApnsCredentials:
    """Reuse directory/credentials.json, or create AuthKey_<kid>.p8 and the JSON describing it."""
    path = directory / "credentials.json"
    if path.exists():
        doc = json.loads(path.read_text())
        creds = ApnsCredentials(doc["team_id"], doc["key_id"], Path(doc["key_path"]), doc["topic"])
        if creds.key_path.exists():
            return creds
    key_id = new_key_id()
    creds = ApnsCredentials(new_key_id(), key_id, directory / f"AuthKey_{key_id}.p8", topic)
    generate_p8(creds.key_path)
    doc = {"team_id": creds.team_id, "key_id": creds.key_id, "key_path": str(creds.key_path),
           "topic": creds.topic}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return creds


class ProviderTokenVerifier:
    """Checks `authorization: bearer <JWT>` against registered keys; caches verified tokens' iat."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}  # kid -> (team, key)
        self._verified: dict[str, int] = {}  # token -> iat

    def register(self, team_id: str, key_id: str, public_key_pem: str) -> None:
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("APNs keys are EC P-256")
        self._keys[key_id] = (team_id, key)
        self._verified.clear()

    def check(self, authorization: str | None, now: float) -> str:
        """'' if valid, else the APNs reason (Missing/Invalid/ExpiredProviderToken)."""
        scheme, _, token = (authorization or "").partition(" ")
        if not token or scheme.lower() != "bearer":
            return "MissingProviderToken"
        iat = self._verified.get(token)
        if iat is None:
            iat = self._verify(token)
        if iat is None:
            return "InvalidProviderToken"
        return "ExpiredProviderToken" if now - iat > TOKEN_MAX_AGE_S else ""

    def _verify(self, token: str) -> int | None:
        try:
            header = jwt.get_unverified_header(token)
            team_id, key = self._keys[str(header.get("kid"))]
            claims = jwt.decode(token, key, algorithms=["ES256"], options={"require": ["iss", "iat"]})
        except (jwt.PyJWTError, KeyError):
            return None
        if claims["iss"] != team_id or not isinstance(claims["iat"], int):
            return None
        if len(self._verified) >= _JWT_CACHE_MAX:
            self._verified.clear()
        self._verified[token] = claims["iat"]
        return claims["iat"]


def _valid_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def check_headers(h: Mapping[str, str]) -> str:
    """'' if the APNs request headers are acceptable, else the APNs reason."""
    if not h.get("apns-topic"):
        return "MissingTopic"
    if h.get("apns-push-type") not in PUSH_TYPES:
        return "InvalidPushType"
    if h.get("apns-priority", "10") not in PRIORITIES:
        return "BadPriority"
    if "apns-id" in h and not _valid_uuid(h["apns-id"]):
        return "BadMessageId"
    if len(h.get("apns-collapse-id", "").encode()) > 64:
        return "BadCollapseId"
    if not h.get("apns-expiration", "0").isdigit():
        return "BadExpirationDate"
    return ""


def payload_limit(push_type: str) -> int:
    return 5120 if push_type == "voip" else 4096


class ApnsSimulator:
    """A VendorSim for APNs (see simulators.common.VendorSim)."""

    name: str = "apns"
    prefixes: tuple[str, ...] = (PATH_PREFIX,)

    def __init__(self, state: SimState | None = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state or SimState()
        self.tokens = ProviderTokenVerifier()
        self._clock = clock
        self.users = population.SimulatedApps(self.state)

    def register_credentials(self, creds: ApnsCredentials) -> None:
        self.tokens.register(creds.team_id, creds.key_id, creds.public_pem())

    def register_key(self, body: Mapping[str, Any]) -> None:
        self.tokens.register(str(body["team_id"]), str(body["key_id"]), str(body["public_key"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        await self.state.lag()
        headers = header_map(scope)
        headers.setdefault("apns-id", str(uuid.uuid4()))  # APNs generates one if omitted
        reply = self.handle(scope["method"], scope["path"], headers, body)
        await respond(send, reply.status, _reply_body(reply), _reply_headers(reply, headers["apns-id"]))
        if reply.status == 200:
            self.acknowledge(scope["path"][len(PATH_PREFIX):], body)

    def acknowledge(self, token: str, body: bytes) -> None:
        """The app's Notification Service Extension: an accepted alert to a registered token is acked when it arrives."""
        if not self.users.has_app(token):
            return
        payload = _json_object(body)
        aps, msg_id = payload.get("aps"), payload.get("msg_id")
        if isinstance(aps, dict) and aps.get("mutable-content") == 1 and isinstance(msg_id, str) and msg_id:
            self.users.acknowledge(msg_id, token, time.time())

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Decide the reply for one request and record it (no I/O)."""
        now = self._clock()
        token = path[len(PATH_PREFIX):]
        reply = self._reject(method, token, headers, body, now) or Reply(200)
        self.state.recorder.received.append((token, reply.status))
        if reply.status == 200:
            payload = body if self.state.config.record_payloads else b""
            self.state.recorder.accepted.append(Accepted(token, headers.get("apns-id", ""), payload, now))
        return reply

    def _reject(self, method: str, token: str, h: Mapping[str, str], body: bytes,
                now: float) -> Reply | None:
        if method != "POST":
            return Reply(405, "MethodNotAllowed")
        if self.state.in_outage(now):
            return Reply(503, "ServiceUnavailable")
        if reason := self.tokens.check(h.get("authorization"), now):
            return Reply(403, reason)
        if reason := check_headers(h):
            return Reply(400, reason)
        return self._check_content(token, h, body, now) or self._inject_fault(now)

    def _check_content(self, token: str, h: Mapping[str, str], body: bytes, now: float) -> Reply | None:
        if len(body) > payload_limit(h.get("apns-push-type", "")):
            return Reply(413, "PayloadTooLarge")
        if not body:
            return Reply(400, "PayloadEmpty")
        if not _TOKEN_RE.fullmatch(token):
            return Reply(400, "BadDeviceToken")
        if token in self.state.config.unregistered_tokens:
            return Reply(410, "Unregistered", timestamp_ms=int(now * 1000))
        return None

    def _inject_fault(self, now: float) -> Reply | None:
        if self.state.roll_unavailable():
            return Reply(503, "ServiceUnavailable")
        if self.state.roll_throttled(now):
            return Reply(429, "TooManyRequests", retry_after_s=self.state.config.retry_after_s)
        return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _reply_body(reply: Reply) -> bytes:
    if reply.status == 200:
        return b""
    doc: dict[str, Any] = {"reason": reply.reason}
    if reply.timestamp_ms:
        doc["timestamp"] = reply.timestamp_ms
    return json.dumps(doc).encode()


def _reply_headers(reply: Reply, apns_id: str) -> tuple[tuple[str, str], ...]:
    return (("apns-id", apns_id), *retry_after(reply.retry_after_s))


def create(state_dir: Path) -> ApnsSimulator:
    """The simulator with its dev signing key (state_dir/apns) registered."""
    sim = ApnsSimulator()
    sim.register_credentials(ensure_credentials(state_dir / sim.name))
    return sim
