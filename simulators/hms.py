"""Huawei Push Kit v1 simulator, mounted under `/hms` on the API port:

    POST /hms/oauth2/v3/token                 client_credentials (client_id = AppID, client_secret)
    POST /hms/v1/{appId}/messages:send        {"validate_only", "message": {"android", "data", "token": [..]}}

Checks, in order: method, outage (502 from the gateway: HMS uses 503 for flow control), access
token (401 80200001 invalid / 80200003 expired), app id (403 80300002), request shape (400
80100001), token count (1..1000, else 80300010), size (message without tokens > 4096: 80300008),
then injected faults (500 81000001; 503 + Retry-After for throttling and quota_per_s), then the
tokens: malformed or unregistered ones are illegal -> all illegal 400 80300007, some 200 80100000
with msg = {"success", "failure", "illegal_tokens"}, none 200 80000000. Accepted tokens are
recorded and, if `receipt_url` is set, get a delivery receipt (simulators.receipts) once they reach their
device (simulators.population).

`HuaweiStyleSimulator` is the machinery shared with the Honor simulator, which swaps the dialect.
"""
from __future__ import annotations

import hmac
import itertools
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushpipe.simulators import population
from pushpipe.simulators.batchsim import ReceiptOutbox
from pushpipe.simulators.common import Accepted, Receive, Scope, Send, SimState, header_map, read_body, respond, retry_after
from pushpipe.simulators.oauth import AccessTokens, new_numeric_id, new_secret, parse_form, write_private
from pushpipe.simulators.receipts import encode_statuses, receipt

API_PATH = "/hms"
MAX_TOKENS = 1000
MAX_PAYLOAD_BYTES = 4096
TOKEN_RE = re.compile(r"[A-Za-z0-9+/=_\-.:]{32,512}")
TTL_RE = re.compile(r"\d+(\.\d+)?s")
CLICK_TYPES = frozenset({1, 2, 3, 4})
_request_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    retry_after_s: int = 0
    receipts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ClientCredentials:
    app_id: str
    client_id: str
    client_secret: str
    api_path: str  # where the simulator mounts this vendor

    def to_json(self) -> dict[str, str]:
        return {"app_id": self.app_id, "client_id": self.client_id, "client_secret": self.client_secret,
                "api_path": self.api_path}


def ensure_client_credentials(directory: Path, api_path: str, new: Callable[[], ClientCredentials]) -> ClientCredentials:
    """Reuse directory/credentials.json (mode 0600), or write new dev credentials there."""
    path = directory / "credentials.json"
    if path.exists():
        doc = json.loads(path.read_text())
        return ClientCredentials(doc["app_id"], doc["client_id"], doc["client_secret"], doc.get("api_path", api_path))
    creds = new()
    write_private(path, json.dumps(creds.to_json(), indent=2) + "\n")
    return creds


def ensure_credentials(directory: Path) -> ClientCredentials:
    """HMS dev credentials: Huawei's OAuth client id is the AppID."""
    def new() -> ClientCredentials:
        app_id = new_numeric_id("10", 7)
        return ClientCredentials(app_id, app_id, new_secret(), API_PATH)

    return ensure_client_credentials(directory, API_PATH, new)


def payload_size(content: Mapping[str, Any]) -> int:
    """The message (HMS) or request (Honor) without its token list, compact JSON, in bytes."""
    counted = {k: v for k, v in content.items() if k != "token"}
    return len(json.dumps(counted, separators=(",", ":"), ensure_ascii=False).encode())


def new_request_id(now: float) -> str:
    return f"{int(now * 1000)}{next(_request_ids) % 10**8:08d}"


def json_reply(status: int, doc: Any, retry_after_s: int = 0) -> Reply:
    return Reply(status, json.dumps(doc).encode(), retry_after_s)


def _token_list(content: Mapping[str, Any] | None) -> list[str] | None:
    tokens = content.get("token") if content is not None else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return None
    return tokens


class HuaweiStyleSimulator:
    """A VendorSim for a Huawei-like push API; subclasses set the paths and the dialect hooks."""

    name: str
    prefixes: tuple[str, ...]
    token_paths: tuple[str, ...]
    send_path: re.Pattern[str]
    max_tokens = MAX_TOKENS
    max_payload_bytes = MAX_PAYLOAD_BYTES

    def __init__(self, state: SimState | None = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state or SimState()
        self._clock = clock
        self.access_tokens = AccessTokens(self.state, clock)
        self.clients: dict[str, tuple[str, str]] = {}  # client_id -> (client_secret, app_id)
        self.receipts = ReceiptOutbox(encode_statuses, interval_s=0.05)
        self.users = population.SimulatedApps(self.state)

    def register_credentials(self, creds: ClientCredentials) -> None:
        self.clients[creds.client_id] = (creds.client_secret, creds.app_id)

    def register_key(self, body: Mapping[str, Any]) -> None:
        """Admin POST /keys: {"app_id", "client_secret"[, "client_id"]}."""
        app_id = str(body["app_id"])
        self.clients[str(body.get("client_id") or app_id)] = (str(body["client_secret"]), app_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if scope["path"] in self.token_paths:
            reply = self.token_endpoint(scope["method"], body)
        else:
            await self.state.lag()
            reply = self.handle(scope["method"], scope["path"], header_map(scope), body)
        await respond(send, reply.status, reply.body, retry_after(reply.retry_after_s))
        self.receipts.add(self.state.config.receipt_url, self.reached(reply.receipts))

    def reached(self, statuses: tuple[dict[str, Any], ...]) -> list[tuple[float, dict[str, Any]]]:
        """(delay_s, status) for what reached the devices (population.fate), stamped when it arrived; their apps
        open and click some. A device with notifications off gets none (Huawei's other status codes are
        UNCONFIRMED). The biTag the adapter set names the app and the message ("<app>|<msg>")."""
        out: list[tuple[float, dict[str, Any]]] = []
        for tag in dict.fromkeys(s["biTag"] for s in statuses):
            app_id, _, msg_id = str(tag).rpartition("|") if "|" in str(tag) else ("", "", str(tag))
            mine = [s for s in statuses if s["biTag"] == tag]
            fates = self.users.fates(msg_id, [s["token"] for s in mine])
            self.users.engage(app_id, msg_id, fates, time.time())
            out += [(what.delay_ms / 1000, {**s, "timestamp": s["timestamp"] + int(what.delay_ms)})
                    for s in mine if (what := fates[s["token"]]).delivered]
        return out

    # ---- OAuth -------------------------------------------------------------------------------------

    def token_endpoint(self, method: str, body: bytes) -> Reply:
        if method != "POST":
            return json_reply(405, {"error": "invalid_request", "error_description": "POST only"})
        form = parse_form(body)
        if form.get("grant_type") != "client_credentials":
            return json_reply(400, {"error": "unsupported_grant_type", "error_description": "client_credentials only"})
        known = self.clients.get(form.get("client_id", ""))
        if known is None or not hmac.compare_digest(known[0], form.get("client_secret", "")):
            return json_reply(401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"})
        return json_reply(200, self.access_tokens.issue(known[1]))

    # ---- the push API ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Decide the reply for one send request and record it (no I/O)."""
        now = self._clock()
        match = self.send_path.fullmatch(path)
        if match is None:
            return self.error(404, "80100001", f"no such API: {path}")
        doc = _json_doc(body)
        content = self.content_of(doc)
        tokens = _token_list(content)
        reply = (self._reject(method, match.group(1), headers, content, tokens, now)
                 or self._deliver(match.group(1), content or {}, tokens or [], body, now))
        self.state.recorder.received.extend((t, reply.status) for t in tokens or [""])
        return reply

    def _reject(self, method: str, app_id: str, headers: Mapping[str, str], content: dict[str, Any] | None,
                tokens: list[str] | None, now: float) -> Reply | None:
        if method != "POST":
            return self.error(405, "80100001", "method not allowed")
        if self.state.in_outage(now):
            return Reply(502, b"<html><body>502 Bad Gateway</body></html>")
        check = self.access_tokens.check(headers.get("authorization"))
        if check.status != "ok":
            code = "80200003" if check.status == "expired" else "80200001"
            return self.error(401, code, f"OAuth token {check.status}")
        if check.subject != app_id:
            return self.error(403, "80300002", "the app is not allowed to send with this token")
        return self.check_headers(headers) or self._check_request(content, tokens) or self._inject_fault(now)

    def _check_request(self, content: dict[str, Any] | None, tokens: list[str] | None) -> Reply | None:
        if content is None or not tokens:
            return self.error(400, "80100001", "illegal request: a token list is required")
        if len(tokens) > self.max_tokens:
            return self.error(400, "80300010", f"too many tokens: {len(tokens)} > {self.max_tokens}")
        if payload_size(content) > self.max_payload_bytes:
            return self.error(400, "80300008", "message body too large")
        problem = self.check_content(content)
        return self.error(400, "80100001", problem) if problem else None

    def _inject_fault(self, now: float) -> Reply | None:
        if self.state.roll_unavailable():
            return self.error(500, "81000001", "System inner error")
        if self.state.roll_throttled(now):
            return Reply(503, json.dumps({"msg": "flow control, try again later"}).encode(),
                         self.state.config.retry_after_s)
        return None

    def _deliver(self, app_id: str, content: dict[str, Any], tokens: list[str], body: bytes, now: float) -> Reply:
        dead = [t for t in tokens if t in self.state.config.unregistered_tokens and TOKEN_RE.fullmatch(t)]
        malformed = [t for t in tokens if not TOKEN_RE.fullmatch(t)]
        bad = set(dead) | set(malformed)
        ok = [t for t in tokens if t not in bad]
        request_id = new_request_id(now)
        payload = body if self.state.config.record_payloads else b""
        self.state.recorder.accepted.extend(Accepted(t, request_id, payload, now) for t in ok)
        reply = self.delivered(request_id, ok, dead, malformed)
        bi_tag = self.bi_tag(content)
        return Reply(reply.status, reply.body, receipts=tuple(receipt(app_id, bi_tag, t, request_id, now) for t in ok))

    # ---- dialect: Huawei Push Kit v1 ---------------------------------------------------------------

    def content_of(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        message = doc.get("message") if doc is not None else None
        return message if isinstance(message, dict) else None

    def error(self, status: int, code: str, msg: str) -> Reply:
        return json_reply(status, {"code": code, "msg": msg, "requestId": new_request_id(self._clock())})

    def delivered(self, request_id: str, ok: list[str], dead: list[str], malformed: list[str]) -> Reply:
        if not ok:
            return json_reply(400, {"code": "80300007", "msg": "All the tokens are invalid", "requestId": request_id})
        if dead or malformed:
            msg = {"success": len(ok), "failure": len(dead) + len(malformed), "illegal_tokens": malformed + dead}
            return json_reply(200, {"code": "80100000", "msg": json.dumps(msg), "requestId": request_id})
        return json_reply(200, {"code": "80000000", "msg": "Success", "requestId": request_id})

    def check_headers(self, headers: Mapping[str, str]) -> Reply | None:
        return None

    def check_content(self, message: dict[str, Any]) -> str:
        """'' if the message is well-formed, else what is wrong."""
        android = message.get("android", {})
        if not isinstance(android, dict):
            return "message.android must be an object"
        if android.get("urgency", "NORMAL") not in ("HIGH", "NORMAL"):
            return "message.android.urgency must be HIGH or NORMAL"
        if not TTL_RE.fullmatch(str(android.get("ttl", "86400s"))):
            return "message.android.ttl must look like '86400s'"
        if "data" in message and not isinstance(message["data"], str):
            return "message.data must be a string"
        if "category" in android and android["category"] not in CATEGORIES:
            return f"message.android.category must be one of Huawei's classification values, got {android['category']!r}"
        return check_click_action(android.get("notification"), "click_action")

    def bi_tag(self, message: Mapping[str, Any]) -> str:
        android = message.get("android")
        return str(android.get("bi_tag", "")) if isinstance(android, dict) else ""


# android.category: the self-classification values (service and communication ones, and MARKETING)
CATEGORIES = frozenset({"IM", "VOIP", "SUBSCRIPTION", "TRAVEL", "HEALTH", "WORK", "ACCOUNT", "EXPRESS", "FINANCE",
                        "DEVICE_REMINDER", "SYSTEM_REMINDER", "MAIL", "PLAY_VOICE", "MARKETING"})


def check_click_action(notification: Any, key: str) -> str:
    if notification is None:
        return ""
    if not isinstance(notification, dict) or not isinstance(notification.get(key), dict):
        return f"android.notification.{key} is required"
    return "" if notification[key].get("type") in CLICK_TYPES else f"android.notification.{key}.type must be 1..4"


def _json_doc(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class HmsSimulator(HuaweiStyleSimulator):
    """A VendorSim for Huawei Push Kit v1 (see simulators.common.VendorSim)."""

    name = "hms"
    prefixes = (API_PATH + "/",)
    token_paths = (API_PATH + "/oauth2/v3/token",)
    send_path = re.compile(re.escape(API_PATH) + r"/v1/([^/]+)/messages:send")


def create(state_dir: Path) -> HmsSimulator:
    """The simulator with its dev app credentials (state_dir/hms) registered."""
    sim = HmsSimulator()
    sim.register_credentials(ensure_credentials(state_dir / sim.name))
    return sim
