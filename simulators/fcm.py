"""FCM HTTP v1 simulator, mounted under `/fcm` on the API port:

    POST /fcm/token                                   Google's OAuth2 JWT-bearer grant
    POST /fcm/v1/projects/{project}/messages:send     {"message": {"token", "notification", "data", ...}}

Token endpoint: the assertion must be RS256-signed by a registered service-account key (kid =
private_key_id if given), iss = client_email, aud = this endpoint's URL, a firebase.messaging or
cloud-platform scope, and exp - iat <= 1 h; else 400 invalid_grant / invalid_scope, as Google.

Send checks, in order: method, outage (503 UNAVAILABLE), access token (401 UNAUTHENTICATED),
project (403 PERMISSION_DENIED), message shape (400 INVALID_ARGUMENT with a field violation),
payload (notification + data > 4096 bytes: 400 INVALID_ARGUMENT), token format (400
INVALID_ARGUMENT, field message.token), unregistered token (404 UNREGISTERED), then injected faults
(503 UNAVAILABLE / 429 QUOTA_EXCEEDED, both with Retry-After), then accept: 200 {"name":
"projects/{p}/messages/{id}"}. Errors carry google.rpc details (FcmError errorCode, BadRequest
fieldViolations). FCM sends no delivery receipts, so neither does this simulator: the app on the device
says what arrived. For a token registered with its app (admin POST /devices) and with SimConfig.sdk_url
set, an accepted message carrying data.msg_id that reaches the device is acked to the gateway as an SDK
"delivered" event (the app's onMessageReceived), then, if it has a notification, opened and clicked as
the population decides (simulators/population.py).
"""
from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushpipe.simulators import population
from pushpipe.simulators.common import Accepted, Receive, Scope, Send, SimState, header_map, read_body, respond, retry_after
from pushpipe.simulators.oauth import AccessTokens, parse_form, write_private

API_PATH = "/fcm"
TOKEN_PATH = API_PATH + "/token"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = frozenset({"https://www.googleapis.com/auth/firebase.messaging",
                    "https://www.googleapis.com/auth/cloud-platform"})
MAX_ASSERTION_LIFETIME_S = 3600
MAX_PAYLOAD_BYTES = 4096
MAX_TTL_S = 28 * 86_400
TOKEN_RE = re.compile(r"[A-Za-z0-9_\-:]{20,4096}")
TTL_RE = re.compile(r"(\d+)(\.\d{1,9})?s")
RESERVED_KEYS = frozenset({"from", "notification", "message_type"})
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_SEND_RE = re.compile(re.escape(API_PATH) + r"/v1/projects/([^/]+)/messages:send")
DEFAULT_PROJECT = "pushpipe-demo"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    retry_after_s: int = 0


@dataclass(frozen=True)
class ServiceAccountKey:
    """What the simulator knows of a service account: its public key."""

    project_id: str
    client_email: str
    key_id: str
    public_key: rsa.RSAPublicKey


@dataclass(frozen=True)
class FcmCredentials:
    service_account_path: Path  # the JSON key, as Google's console downloads it
    project_id: str
    client_email: str

    def key(self) -> ServiceAccountKey:
        doc = json.loads(self.service_account_path.read_text())
        return key_from_service_account(doc)


def key_from_service_account(doc: Mapping[str, Any]) -> ServiceAccountKey:
    private = serialization.load_pem_private_key(str(doc["private_key"]).encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("service-account keys are RSA")
    return ServiceAccountKey(doc["project_id"], doc["client_email"], doc.get("private_key_id", ""), private.public_key())


def new_service_account(project_id: str) -> dict[str, str]:
    """A service-account JSON key shaped like the ones Google issues (RSA 2048, PKCS#8 PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"firebase-adminsdk-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
    return {"type": "service_account", "project_id": project_id, "private_key_id": secrets.token_hex(20),
            "private_key": pem, "client_email": email, "client_id": str(secrets.randbelow(10**21)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": GOOGLE_TOKEN_URI,
            "universe_domain": "googleapis.com"}


def ensure_credentials(directory: Path, project_id: str = DEFAULT_PROJECT) -> FcmCredentials:
    """Reuse directory/credentials.json, or create service-account.json and the JSON describing it."""
    path = directory / "credentials.json"
    if path.exists():
        doc = json.loads(path.read_text())
        creds = FcmCredentials(Path(doc["service_account"]), doc["project_id"], doc["client_email"])
        if creds.service_account_path.exists():
            return creds
    account = new_service_account(project_id)
    key_path = directory / "service-account.json"
    write_private(key_path, json.dumps(account, indent=2) + "\n")
    creds = FcmCredentials(key_path, project_id, account["client_email"])
    doc = {"service_account": str(key_path), "project_id": project_id, "client_email": creds.client_email,
           "api_path": API_PATH}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return creds


# ---- replies -------------------------------------------------------------------------------------

def google_error(status: int, rpc_status: str, message: str, error_code: str = "", field: str = "",
                 retry_after_s: int = 0) -> Reply:
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR, "errorCode": error_code})
    if field:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]})
    doc = {"error": {"code": status, "message": message, "status": rpc_status, "details": details}}
    return Reply(status, json.dumps(doc).encode(), retry_after_s)


def invalid(message: str, field: str) -> Reply:
    return google_error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT", field)


def oauth_error(error: str, description: str) -> Reply:
    return Reply(400, json.dumps({"error": error, "error_description": description}).encode())


# ---- message checks (pure) -----------------------------------------------------------------------

def payload_size(message: Mapping[str, Any]) -> int:
    counted = {k: message[k] for k in ("notification", "data") if k in message}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode())


def check_target(message: Mapping[str, Any]) -> Reply | None:
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return invalid("exactly one of token, topic or condition is required", "message")
    if targets != ["token"] or not isinstance(message["token"], str):
        return invalid("this simulator supports token messages only", "message")
    return None


def check_data(data: Any) -> Reply | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return invalid("data values must be strings", "message.data")
    reserved = [k for k in data if k in RESERVED_KEYS or k.lower().startswith(("google", "gcm"))]
    return invalid(f"reserved data keys {reserved}", "message.data") if reserved else None


def check_android(android: Any) -> Reply | None:
    if android is None:
        return None
    if not isinstance(android, dict):
        return invalid("android must be an object", "message.android")
    if android.get("priority", "normal") not in ("normal", "high"):
        return invalid("priority must be normal or high", "message.android.priority")
    ttl = TTL_RE.fullmatch(str(android.get("ttl", "0s")))
    if ttl is None or int(ttl.group(1)) > MAX_TTL_S:
        return invalid("ttl must be a duration like '3600s', at most 4 weeks", "message.android.ttl")
    return None


def check_message(message: Mapping[str, Any]) -> Reply | None:
    problem = check_target(message) or check_data(message.get("data")) or check_android(message.get("android"))
    if problem:
        return problem
    if payload_size(message) > MAX_PAYLOAD_BYTES:
        return invalid("Message is too big", "message")
    if not TOKEN_RE.fullmatch(message["token"]):
        return invalid("The registration token is not a valid FCM registration token", "message.token")
    return None


# ---- the simulator -------------------------------------------------------------------------------

class FcmSimulator:
    """A VendorSim for FCM HTTP v1 (see simulators.common.VendorSim)."""

    name = "fcm"
    prefixes = (API_PATH + "/",)

    def __init__(self, state: SimState | None = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state or SimState()
        self._clock = clock
        self.access_tokens = AccessTokens(self.state, clock)
        self.accounts: dict[str, ServiceAccountKey] = {}  # client_email -> key
        self.users = population.SimulatedApps(self.state)

    def register_credentials(self, creds: FcmCredentials) -> None:
        key = creds.key()
        self.accounts[key.client_email] = key

    def register_key(self, body: Mapping[str, Any]) -> None:
        """Admin POST /keys: a service-account JSON key ({"service_account": {...}}); the private key
        is used only to derive the public key, as Google's console would have it."""
        key = key_from_service_account(body["service_account"])
        self.accounts[key.client_email] = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if scope["path"] == TOKEN_PATH:
            reply = self.token_endpoint(scope["method"], body, _audiences(scope))
        else:
            await self.state.lag()
            reply = self.handle(scope["method"], scope["path"], header_map(scope), body)
        await respond(send, reply.status, reply.body, retry_after(reply.retry_after_s))
        if reply.status == 200 and scope["path"] != TOKEN_PATH:
            self.acknowledge(body)

    def acknowledge(self, body: bytes) -> None:
        """The app's onMessageReceived: an accepted message to a registered token is acked when it arrives."""
        message = _message(body) or {}
        token, data = message.get("token"), message.get("data")
        if not isinstance(token, str) or not self.users.has_app(token):
            return
        msg_id = data.get("msg_id") if isinstance(data, dict) else None
        if isinstance(msg_id, str) and msg_id:
            self.users.acknowledge(msg_id, token, time.time(), shown="notification" in message)

    # ---- OAuth -------------------------------------------------------------------------------------

    def token_endpoint(self, method: str, body: bytes, audiences: frozenset[str]) -> Reply:
        form = parse_form(body) if method == "POST" else {}
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        return self._exchange(form.get("assertion", ""), audiences)

    def _exchange(self, assertion: str, audiences: frozenset[str]) -> Reply:
        try:
            key = self.accounts[str(jwt.decode(assertion, options={"verify_signature": False})["iss"])]
            if key.key_id and jwt.get_unverified_header(assertion).get("kid") not in (None, key.key_id):
                raise jwt.InvalidSignatureError("unknown kid")
            claims = jwt.decode(assertion, key.public_key, algorithms=["RS256"], audience=list(audiences),
                                options={"require": ["iss", "aud", "iat", "exp"]}, leeway=60)
        except (jwt.PyJWTError, KeyError) as exc:
            return oauth_error("invalid_grant", f"Invalid JWT: {type(exc).__name__}")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_ASSERTION_LIFETIME_S:
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)")
        if not SCOPES & set(str(claims.get("scope", "")).split()):
            return oauth_error("invalid_scope", "firebase.messaging or cloud-platform scope required")
        return Reply(200, json.dumps(self.access_tokens.issue(key.project_id)).encode())

    # ---- the push API ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Decide the reply for one send request and record it (no I/O)."""
        now = self._clock()
        match = _SEND_RE.fullmatch(path)
        if match is None:
            return google_error(404, "NOT_FOUND", f"no such method: {path}")
        message = _message(body)
        token = str(message.get("token", "")) if message else ""
        reply = self._reject(method, match.group(1), headers, message, now) or self._accept(match.group(1), token, body, now)
        self.state.recorder.received.append((token, reply.status))
        return reply

    def _reject(self, method: str, project: str, headers: Mapping[str, str], message: dict[str, Any] | None,
                now: float) -> Reply | None:
        if method != "POST":
            return google_error(405, "INVALID_ARGUMENT", "POST only")
        if self.state.in_outage(now):
            return google_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE",
                                retry_after_s=self.state.config.retry_after_s)
        check = self.access_tokens.check(headers.get("authorization"))
        if check.status != "ok":
            return google_error(401, "UNAUTHENTICATED", f"Request had invalid authentication credentials ({check.status}).")
        if check.subject != project:
            return google_error(403, "PERMISSION_DENIED", f"Permission denied on project {project}")
        if message is None:
            return invalid("Invalid JSON payload: a message object is required", "message")
        return check_message(message) or self._check_token(message["token"]) or self._inject_fault(now)

    def _check_token(self, token: str) -> Reply | None:
        if token in self.state.config.unregistered_tokens:
            return google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        return None

    def _inject_fault(self, now: float) -> Reply | None:
        retry_after = self.state.config.retry_after_s
        if self.state.roll_unavailable():
            return google_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE",
                                retry_after_s=retry_after)
        if self.state.roll_throttled(now):
            return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED",
                                retry_after_s=retry_after)
        return None

    def _accept(self, project: str, token: str, body: bytes, now: float) -> Reply:
        name = f"projects/{project}/messages/0:{int(now * 1000)}%{secrets.token_hex(8)}"
        payload = body if self.state.config.record_payloads else b""
        self.state.recorder.accepted.append(Accepted(token, name, payload, now))
        return Reply(200, json.dumps({"name": name}).encode())


def _message(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    message = doc.get("message") if isinstance(doc, dict) else None
    return message if isinstance(message, dict) else None


def _audiences(scope: Scope) -> frozenset[str]:
    """This endpoint's URL as the client may have named it (the aud a valid assertion carries)."""
    headers = header_map(scope)
    hosts = {h for h in (headers.get("host"), headers.get(":authority")) if h}
    server = scope.get("server")
    if server:
        hosts.add(f"{server[0]}:{server[1]}")
    return frozenset(f"https://{h}{scope['path']}" for h in hosts)


def create(state_dir: Path) -> FcmSimulator:
    """The simulator with its dev service account (state_dir/fcm) registered."""
    sim = FcmSimulator()
    sim.register_credentials(ensure_credentials(state_dir / sim.name))
    return sim
