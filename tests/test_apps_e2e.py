"""The app registry read by the jobs and the receipt gateway, through the real stack: an app's vendors applied by
fan-out (vendor_not_allowed), its callback secret rotated (the old signatures refused by the real gateway, the new
ones taken, and dispatch signing its sends with the new one), and a second gateway process that serves only
registered apps (app_registry_required) refusing another app's callback to push.dlq.

tests/test_app_rules.py and tests/test_gateway.py check the same rules without services."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.demo import demo_token
from pushpipe.gateway import signing
from pushpipe.ingress.apps import KafkaApps, Registry
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.schemas.apps import App
from test_isolation_e2e import dead_letters, message_counts, registered, sent
from test_receipts_e2e import deliveries_of, receipts

pytestmark = pytest.mark.stack


def registry_call(settings: Settings, call: str, app_id: str, **fields: object) -> App:
    """Registry.<call>(app_id, **fields) on the stack's apps topic; the app as it is kept afterwards."""
    store = KafkaApps(settings)
    try:
        store.follower.wait_loaded(30)
        done = getattr(Registry(store), call)(app_id, **fields)
        return done[0] if isinstance(done, tuple) else done
    finally:
        store.close()


def xiaomi_receipt(gateway_url: str, key: bytes, app: str, msg_id: str = "earlier-msg") -> httpx.Response:
    doc = {"sc-1": {"param": msg_id, "type": 1, "targets": "tok", "timestamp": int(time.time() * 1000)}}
    return httpx.post(signing.callback_url(gateway_url, key, "xiaomi", app), data={"data": json.dumps(doc)}, timeout=30)


def test_an_app_reaches_only_devices_of_its_vendors(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"vendors-{run_id}"
    registry_call(pipeline, "create", app, vendors=["hms"])
    hms, ios = demo_token("hms", run_id, 1), demo_token("apns", run_id, 2)
    registered(producer, pipeline, device_event(app, "alice", hms, vendor="hms"), device_event(app, "alice", ios, vendor="apns"))
    push = push_request(app, ["alice"], "Order shipped", "Arriving Tuesday", category="transactional")
    sent(producer, push)
    observe.wait_for(lambda: message_counts(pipeline, app, push["msg_id"]).get("suppressed") == 1
                     and message_counts(pipeline, app, push["msg_id"]).get("accepted") == 1, 120, "HMS accepted, APNs suppressed")
    by_token = {d.get("token"): d for d in deliveries_of(pipeline, app, push["msg_id"])}
    assert by_token[hms]["outcome"] == "accepted"
    assert (by_token[ios]["outcome"], by_token[ios]["reason"], by_token[ios]["pin"]) == ("suppressed", "vendor_not_allowed", "alice")
    assert observe.simulator_accepted(pipeline, ios)["count"] == 0, "nothing went to the APNs device"


def test_a_rotated_callback_secret_ends_the_old_signatures_and_dispatch_signs_with_the_new(
        pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"rotate-{run_id}"
    first = registry_call(pipeline, "create", app)
    receipt_key = signing.load_key(pipeline.receipt_key_file)
    old = signing.key_for(receipt_key, first)
    observe.wait_for(lambda: xiaomi_receipt(pipeline.gateway_url, old, app).status_code == 200, 30, "the gateway to know the app")
    assert xiaomi_receipt(pipeline.gateway_url, receipt_key, app).status_code == 401, "a registered app's URL is signed with its own key"
    token = demo_token("xiaomi", run_id, 1)
    registered(producer, pipeline, device_event(app, "u", token, vendor="xiaomi"))
    push = push_request(app, ["u"], "Order shipped", "Arriving Tuesday", category="transactional")
    sent(producer, push)
    observe.wait_for(lambda: message_counts(pipeline, app, push["msg_id"]).get("delivered") == 1, 120,
                     "the simulator's receipt, posted to the callback URL dispatch signed with the app's key")

    rotated = registry_call(pipeline, "rotate_callback", app)
    new = signing.key_for(receipt_key, rotated)
    stale = observe.wait_for(lambda: (r := xiaomi_receipt(pipeline.gateway_url, old, app)).status_code == 401 and r, 30,
                             "the gateway to refuse the old signature")
    assert stale.json()["error"] == "bad_signature"
    assert xiaomi_receipt(pipeline.gateway_url, new, app).status_code == 200
    again = push_request(app, ["u"], "Order delivered", "Enjoy", category="transactional")
    sent(producer, again)
    observe.wait_for(lambda: message_counts(pipeline, app, again["msg_id"]).get("delivered") == 1, 120,
                     "the next push's receipt, on a URL signed with the new key")
    assert receipts(pipeline, app).get("delivered", 0) >= 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def strict_gateway(pipeline: Settings, tmp_path: Path) -> Iterator[str]:
    """A second receipt gateway, serving only registered apps (PUSHPIPE_APP_REGISTRY_REQUIRED=1), on a free port."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "PUSHPIPE_GATEWAY_URL": url, "PUSHPIPE_APP_REGISTRY_REQUIRED": "1"}
    with open(tmp_path / "gateway.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pushpipe.gateway"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        observe.wait_for(lambda: _healthy(url) or process.poll() is not None, 60, "the second gateway to answer")
        assert process.poll() is None, (tmp_path / "gateway.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _healthy(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=2).json().get("ok"))
    except (httpx.HTTPError, ValueError):
        return False


def test_a_gateway_that_requires_registration_refuses_other_apps_to_the_dlq(pipeline: Settings, strict_gateway: str, run_id: str) -> None:
    stranger, member = f"stranger-{run_id}", f"member-{run_id}"
    app = registry_call(pipeline, "create", member)
    receipt_key = signing.load_key(pipeline.receipt_key_file)
    observe.wait_for(lambda: xiaomi_receipt(strict_gateway, signing.key_for(receipt_key, app), member).status_code == 200, 30,
                     "the strict gateway to take a registered app's receipt")
    refused = xiaomi_receipt(strict_gateway, receipt_key, stranger)
    assert (refused.status_code, refused.json()["error"]) == (404, "unknown_app")
    assert xiaomi_receipt(pipeline.gateway_url, receipt_key, stranger).status_code == 200, "the stack's gateway serves it as before"
    [letter] = dead_letters(pipeline, 1, lambda d: d["job"] == "gateway" and d["app_id"] == stranger)
    assert letter["error"] == "unknown_app"
    metrics = httpx.get(f"{strict_gateway}/metrics", timeout=10).text
    assert 'pushpipe_gateway_refused_total{reason="unknown_app",source="vendor"} 1.0' in metrics
