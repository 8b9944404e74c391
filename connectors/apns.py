"""Apple APNs provider API adapter: HTTP/2, token (JWT ES256) auth, one request per device token.

Pure parts (payload, headers, response classification, provider token) are separate from the
transport so they can be tested without a network. See /work/shared/VENDORS.md section 1.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushpipe.connectors.base import AdapterSession, InvalidNotification, Notification, Outcome, Secret, TokenResult, Vendor, mask_secrets, reveal
from pushpipe.connectors.credentials import UNWATCHED, AccessToken, CredentialCache, CredentialEvents
from pushpipe.connectors.h2client import H2Client, H2Error
from pushpipe.connectors.http import parse_retry_after, ssl_context, transport_failure
from pushpipe.connectors.limits import PayloadLimit
from pushpipe.connectors.spec import VendorSpec

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
PROVIDER_TOKEN_LIFETIME_S = 3600  # Apple refuses a JWT older than this (403 ExpiredProviderToken)
PRIORITY = {"high": "10", "normal": "5", "low": "1"}
VOLATILE_HEADERS = frozenset({"apns-id", "apns-expiration"})  # new values with every request: kept out of HPACK's table
DEAD_TOKEN_REASONS = frozenset({"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"})
_APNS_ID_NAMESPACE = uuid.UUID("6f1c2a52-9a4e-4f59-8f0c-2d7f4c7e0b11")

Clock = Callable[[], float]


@dataclass(frozen=True)
class ApnsConfig:
    """One Team ID + key pair (Apple counts token refreshes per team, so one adapter per key)."""

    vendor: ClassVar[Vendor] = Vendor.APNS

    team_id: str
    key_id: str
    p8_key: Secret | str  # PEM text or a path to AuthKey_<kid>.p8; stored as Secret
    topic: str  # default bundle id when Notification.topic is empty
    base_url: str = PRODUCTION_URL
    sandbox_url: str = SANDBOX_URL
    verify: str | bool = True  # CA bundle path, True (system CAs) or False
    timeout_s: float = 10.0
    max_streams: int = 100  # concurrent requests (HTTP/2 streams) per adapter
    max_batch: int = 1000
    token_refresh_s: float = 50 * 60

    def __post_init__(self) -> None:
        mask_secrets(self, "p8_key")
        for name in ("team_id", "key_id"):
            value = getattr(self, name)
            if len(value) != 10 or not value.isalnum():
                raise ValueError(f"{name} must be 10 alphanumeric characters, got {value!r}")
        if not self.topic:
            raise ValueError("topic (bundle id) is required")
        if self.timeout_s <= 0 or self.max_streams < 1 or self.max_batch < 1:
            raise ValueError("timeout_s, max_streams and max_batch must be positive")
        if not 20 * 60 <= self.token_refresh_s < 60 * 60:
            raise ValueError("token_refresh_s must be within [20 min, 60 min) per Apple's rules")

    def private_pem(self) -> str:
        raw = reveal(self.p8_key)
        return raw if raw.lstrip().startswith("-----BEGIN") else Path(raw).read_text()

    def url_for(self, environment: str) -> str:
        return self.sandbox_url if environment == "sandbox" else self.base_url

    @classmethod
    def from_credentials(cls, path: Path, **overrides: Any) -> ApnsConfig:
        """Load {team_id, key_id, key_path, topic} JSON (as the simulator writes it)."""
        creds = json.loads(Path(path).read_text())
        fields = {"team_id": creds["team_id"], "key_id": creds["key_id"],
                  "p8_key": creds["key_path"], "topic": creds["topic"]}
        return cls(**{**fields, **overrides})


# ---- pure builders ---------------------------------------------------------------------------

def is_alert(n: Notification) -> bool:
    return bool(n.title or n.body)


def build_payload(n: Notification) -> dict[str, Any]:
    """aps + custom data at top level; alerts carry mutable-content so the app can ack receipt."""
    aps: dict[str, Any]
    if is_alert(n):
        aps = {"alert": {"title": n.title, "body": n.body}, "sound": "default", "mutable-content": 1}
        if n.category:
            aps["category"] = n.category
    else:
        aps = {"content-available": 1}
    return {**n.data, "msg_id": n.msg_id, "aps": aps}


def encode_payload(n: Notification) -> bytes:
    body = json.dumps(build_payload(n), separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidNotification("PayloadTooLarge", f"{len(body)} > {MAX_PAYLOAD_BYTES} bytes")
    return body


def apns_id(msg_id: str, token: str) -> str:
    """Stable per (message, token), so a retried send carries the same apns-id."""
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, f"{msg_id}/{token}"))


def build_headers(n: Notification, token: str, now: float) -> dict[str, str]:
    if not n.topic:
        raise InvalidNotification("MissingTopic")
    if len(n.collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
        raise InvalidNotification("BadCollapseId", f"over {MAX_COLLAPSE_ID_BYTES} bytes")
    if not n.collapse_id.isprintable():
        raise InvalidNotification("BadCollapseId", "control characters are not allowed in a header")
    alert = is_alert(n)
    headers = {
        "apns-push-type": "alert" if alert else "background",
        "apns-topic": n.topic,
        "apns-priority": PRIORITY[n.priority] if alert else "5",  # Apple: background must be 5
        "apns-expiration": "0" if n.ttl_s == 0 else str(int(now) + n.ttl_s),
        "apns-id": apns_id(n.msg_id, token),
    }
    if n.collapse_id:
        headers["apns-collapse-id"] = n.collapse_id
    return headers


def device_path(token: str) -> str:
    return f"/3/device/{quote(token, safe='')}"


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body).get("reason", ""))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


def outcome_for(status: int, reason: str) -> Outcome:
    if status == 200:
        return Outcome.ACCEPTED
    if status == 410 or reason in DEAD_TOKEN_REASONS:
        return Outcome.INVALID_TOKEN
    if status == 429:
        return Outcome.THROTTLED
    if status >= 500 or reason == "ExpiredProviderToken":  # we refresh the JWT; a retry succeeds
        return Outcome.UNAVAILABLE
    return Outcome.REJECTED


def classify_response(token: str, status: int, headers: Mapping[str, str], body: bytes,
                      now: float) -> TokenResult:
    reason = "" if status == 200 else _reason(body)
    return TokenResult(
        token=token,
        outcome=outcome_for(status, reason),
        code=str(status),
        reason=reason,
        retry_after_s=parse_retry_after(headers.get("retry-after"), now),
        vendor_msg_id=headers.get("apns-id", ""),
    )


# ---- provider token --------------------------------------------------------------------------

class ProviderToken(CredentialCache):
    """The cached ES256 JWT: minted on first use, re-minted after refresh_s or when invalidated (a 403
    ExpiredProviderToken; many in-flight 403s cause one refresh). It expires PROVIDER_TOKEN_LIFETIME_S after its iat."""

    kind: ClassVar[str] = "provider jwt"

    def __init__(self, team_id: str, key_id: str, private_pem: str, *, clock: Clock,
                 refresh_s: float, events: CredentialEvents = UNWATCHED) -> None:
        super().__init__(clock=clock, refresh_margin_s=PROVIDER_TOKEN_LIFETIME_S - refresh_s, events=events)
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs .p8 key must be an EC P-256 private key")
        self._key = key
        self._team_id, self._key_id = team_id, key_id

    def get(self) -> str:
        return self.obtain_now(self._mint)

    def _mint(self, now: float) -> AccessToken:
        claims = {"iss": self._team_id, "iat": int(now)}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._key_id})
        return AccessToken(token, int(now) + PROVIDER_TOKEN_LIFETIME_S)


# ---- transport -------------------------------------------------------------------------------

@dataclass
class _Session:
    """Everything open() creates and aclose() releases."""

    clients: dict[str, H2Client]  # base URL (production, sandbox) -> its HTTP/2 connection, opened on first use
    streams: asyncio.Semaphore
    jwt: ProviderToken


class ApnsAdapter(AdapterSession[ApnsConfig, _Session]):
    """VendorAdapter for APNs. One HTTP/2 connection per host; at most max_streams requests in flight."""

    vendor = Vendor.APNS

    @property
    def provider_token(self) -> ProviderToken | None:
        return self._session.jwt if self._session else None

    def start(self) -> _Session:
        c = self.config
        token = ProviderToken(c.team_id, c.key_id, c.private_pem(), clock=self._clock,
                              refresh_s=c.token_refresh_s, events=self.credential_events)
        clients = {url: H2Client(url, ssl_context(c.verify), c.timeout_s, volatile=VOLATILE_HEADERS)
                   for url in {c.base_url, c.sandbox_url}}
        return _Session(clients, asyncio.Semaphore(c.max_streams), token)

    async def stop(self, session: _Session) -> None:
        await asyncio.gather(*(client.aclose() for client in session.clients.values()))

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        session = self.session()
        n = notification if notification.topic else replace(notification, topic=self.config.topic)
        try:
            build_headers(n, "", 0.0)  # validate topic and collapse id once
            body = encode_payload(n)
        except InvalidNotification as exc:
            return exc.results(tokens)
        client = session.clients[self.config.url_for(n.environment)]
        return list(await asyncio.gather(*(self._send_one(session, client, n, t, body) for t in tokens)))

    async def _send_one(self, s: _Session, client: H2Client, n: Notification, token: str,
                        body: bytes) -> TokenResult:
        headers = build_headers(n, token, self._clock())
        async with s.streams:
            bearer = s.jwt.get()
            headers["authorization"] = f"bearer {bearer}"
            try:
                resp = await client.post(device_path(token), headers, body)
            except H2Error as exc:  # connect, TLS, reset, GOAWAY, timeouts
                return transport_failure(token, exc)
        result = classify_response(token, resp.status, resp.headers, resp.body, self._clock())
        if result.reason == "ExpiredProviderToken":
            s.jwt.invalidate(bearer)
        return result


def simulator_entry(creds: Mapping[str, Any], sims: Mapping[str, Any]) -> dict[str, Any]:
    """The simulator's dev key (team, key id, .p8 path, topic); production and sandbox both on the simulator."""
    return {"team_id": creds["team_id"], "key_id": creds["key_id"], "p8_key": creds["key_path"],
            "topic": creds["topic"], "base_url": sims["api_url"], "sandbox_url": sims["api_url"],
            "verify": sims["ca_cert"]}


SPEC = VendorSpec(
    vendor=Vendor.APNS, config=ApnsConfig, adapter=ApnsAdapter, simulator_entry=simulator_entry,
    payload=PayloadLimit(max_bytes=MAX_PAYLOAD_BYTES, overhead_bytes=256),
    sample_token=lambda hexed: hexed.ljust(64, "0"),
)
