"""Honor Push simulator, mounted under `/honor` on the API port: Huawei-like, in Honor's dialect.

    POST /honor/auth/token                                           client_credentials
    POST /honor/auth/realms/developer/protocol/openid-connect/token  the same (Keycloak path, 2nd)
    POST /honor/api/v1/{appId}/sendMessage    Bearer + `timestamp` header (epoch ms)
         {"data", "notification"?, "android": {"ttl", "biTag", "notification"?: {.., "clickAction"}},
          "token": [..]}

Replies follow third-party SDKs (2nd, UNCONFIRMED, like connectors.honor): a processed request is
200 {"code": 200, "message": "success", "data": {"sendResult", "requestId", "failTokens":
[malformed], "expireTokens": [unregistered]}}; errors are {"code": <Huawei's code as a number>,
"message", "data": null} with the HMS simulator's HTTP statuses (401 80200001/80200003, 400
80100001/80300008/80300010, 500 81000001, 503 flow control with Retry-After, 502 outage).
A missing or non-numeric `timestamp` header is 400 80100001. Receipts as HMS (`statuses[]`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushpipe.simulators.hms import TTL_RE, ClientCredentials, HuaweiStyleSimulator, Reply, check_click_action, ensure_client_credentials, json_reply
from pushpipe.simulators.oauth import new_numeric_id, new_secret

API_PATH = "/honor"
IMPORTANCE = frozenset({"LOW", "NORMAL"})


def ensure_credentials(directory: Path) -> ClientCredentials:
    """Honor dev credentials: an AppID plus a separate OAuth client id and secret."""
    def new() -> ClientCredentials:
        return ClientCredentials(new_numeric_id("104", 6), new_secret()[:32], new_secret(), API_PATH)

    return ensure_client_credentials(directory, API_PATH, new)


class HonorSimulator(HuaweiStyleSimulator):
    """A VendorSim for Honor Push (see simulators.common.VendorSim)."""

    name = "honor"
    prefixes = (API_PATH + "/",)
    token_paths = (API_PATH + "/auth/token", API_PATH + "/auth/realms/developer/protocol/openid-connect/token")
    send_path = re.compile(re.escape(API_PATH) + r"/api/v1/([^/]+)/sendMessage")

    def content_of(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        return doc

    def error(self, status: int, code: str, msg: str) -> Reply:
        return json_reply(status, {"code": int(code), "message": msg, "data": None})

    def delivered(self, request_id: str, ok: list[str], dead: list[str], malformed: list[str]) -> Reply:
        data = {"sendResult": bool(ok), "requestId": request_id, "failTokens": malformed, "expireTokens": dead}
        return json_reply(200, {"code": 200, "message": "success", "data": data})

    def check_headers(self, headers: Mapping[str, str]) -> Reply | None:
        if not headers.get("timestamp", "").isdigit():
            return self.error(400, "80100001", "the timestamp header (epoch milliseconds) is required")
        return None

    def check_content(self, request: dict[str, Any]) -> str:
        android = request.get("android", {})
        if not isinstance(android, dict):
            return "android must be an object"
        if not TTL_RE.fullmatch(str(android.get("ttl", "86400s"))):
            return "android.ttl must look like '86400s'"
        if "data" in request and not isinstance(request["data"], str):
            return "data must be a string"
        notification = android.get("notification")
        if isinstance(notification, dict) and notification.get("importance", "NORMAL") not in IMPORTANCE:
            return "android.notification.importance must be LOW or NORMAL"
        return check_click_action(notification, "clickAction")

    def bi_tag(self, request: Mapping[str, Any]) -> str:
        android = request.get("android")
        return str(android.get("biTag", "")) if isinstance(android, dict) else ""


def create(state_dir: Path) -> HonorSimulator:
    """The simulator with its dev app credentials (state_dir/honor) registered."""
    sim = HonorSimulator()
    sim.register_credentials(ensure_credentials(state_dir / sim.name))
    return sim
