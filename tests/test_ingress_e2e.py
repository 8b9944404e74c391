"""The HTTP send API through the real stack: apps made with the CLI, devices bound and pushes sent over HTTP,
delivered to the vendor simulator and counted; the 4xx answers; one app's credentials never reaching another's.

Every test takes the `pipeline` fixture: `pushpipe up` (infra/) runs Kafka, the jobs, Elasticsearch, the simulators and
the send API (infra/ingress.py) on api_url."""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.ingress.apps import KafkaApps, Registry

pytestmark = pytest.mark.stack


def tok(run_id: str, n: int) -> str:
    return f"{run_id}{n:05x}".ljust(64, "a")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushpipe.cli", *args], capture_output=True, text=True, timeout=120)


class Caller:
    """One app's HTTP client: its credentials on every request."""

    def __init__(self, settings: Settings, app: str, secret: str) -> None:
        self.app = app
        self.http = httpx.Client(base_url=settings.api_url, timeout=30,
                                 headers={"X-Pushpipe-App": app, "Authorization": f"Bearer {secret}"})

    def post(self, path: str, body: Any, app: str | None = None, **headers: str) -> httpx.Response:
        return self.http.post(f"/v1/apps/{app or self.app}{path}", json=body, headers=headers)

    def message(self, msg_id: str, app: str | None = None) -> httpx.Response:
        return self.http.get(f"/v1/apps/{app or self.app}/messages/{msg_id}")


def made(settings: Settings, app: str, rate: float = 1000) -> Caller:
    """A new app, once the API has read it from the apps topic."""
    store = KafkaApps(settings)
    try:
        store.follower.wait_loaded(30)
        _, secret = Registry(store).create(app, rate_per_s=rate)
    finally:
        store.close()
    caller = Caller(settings, app, secret)
    observe.wait_for(lambda: caller.message("none").status_code == 404, 30, f"the API to know app {app}")
    return caller


def bound(settings: Settings, caller: Caller, pin: str, *tokens: str) -> None:
    for token in tokens:
        answer = caller.post("/devices/bind", {"token": token, "vendor": "apns", "pin": pin})
        assert answer.status_code == 202, answer.text
    observe.wait_fanout_read(settings, timeout_s=90)


def test_an_app_made_with_the_cli_sends_over_http_to_a_simulated_device(pipeline: Settings, run_id: str) -> None:
    app = f"http-{run_id}"
    created = cli("app", "create", app, "--rate", "100")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.splitlines()[2].strip()
    listed = cli("app", "list")
    assert app in listed.stdout and secret not in listed.stdout
    caller = Caller(pipeline, app, secret)
    observe.wait_for(lambda: caller.message("none").status_code == 404, 30, f"the API to know app {app}")
    bound(pipeline, caller, "alice", tok(run_id, 1))
    msg_id = f"order-{run_id}"
    sent = caller.post("/push", {"target": "pin", "pins": ["alice"], "notification": {"title": "Shipped", "body": "Tuesday"}},
                       **{"Idempotency-Key": msg_id})
    assert sent.status_code == 202 and sent.json() == {"msg_ids": [msg_id]}
    observe.wait_for(lambda: observe.simulator_accepted(pipeline, run_id)["unique"] == 1, 90, "the simulator to accept the push")
    shown = observe.wait_for(lambda: (r := caller.message(msg_id)).status_code == 200 and r.json()["counts"].get("accepted") and r.json(),
                             120, "the message's counts")
    assert shown["state"] in ("accepted", "delivered", "opened") and shown["counts"]["accepted"] == 1
    again = caller.post("/push", {"target": "pin", "pins": ["alice"], "notification": {"title": "Shipped"}}, **{"Idempotency-Key": msg_id})
    assert again.status_code == 202  # the same message: fan-out's dedup window takes it once
    after = caller.post("/push", {"target": "pin", "pins": ["alice"], "notification": {"title": "Delivered"}})
    assert after.status_code == 202
    observe.wait_for(lambda: observe.simulator_accepted(pipeline, run_id)["count"] >= 2, 90, "the next push to be accepted")
    time.sleep(2)
    assert observe.simulator_accepted(pipeline, run_id)["count"] == 2, "the resent message went out once"
    rotated = cli("app", "rotate-secret", app)
    assert rotated.returncode == 0, rotated.stderr
    observe.wait_for(lambda: caller.message(msg_id).status_code == 401, 30, "the old secret to stop working")
    assert Caller(pipeline, app, rotated.stdout.splitlines()[1].strip()).message(msg_id).status_code == 200


def state_of(caller: Caller, msg_id: str) -> dict[str, Any]:
    """The message's status once its first result is counted."""
    return observe.wait_for(lambda: (r := caller.message(msg_id)).status_code == 200 and r.json(), 120, f"{msg_id}'s status")


def test_the_device_routes_preferences_and_batches_of_the_real_api(pipeline: Settings, run_id: str) -> None:
    """Each device route, preferences and a batch through the real API, each taking effect in the pipeline; their 400s and a batch's 413."""
    caller = made(pipeline, f"dev-{run_id}")
    first, refreshed = tok(run_id, 0x10), tok(run_id, 0x11)
    bound(pipeline, caller, "dave", first)
    report = caller.post("/devices/report", {"token": refreshed, "previous_token": first, "vendor": "apns", "pin": "dave"})
    assert report.status_code == 202, report.text
    no_token = caller.post("/devices/bind", {"vendor": "apns", "pin": "dave"})
    assert no_token.status_code == 400 and set(no_token.json()["fields"]) == {"token"}
    observe.wait_fanout_read(pipeline, timeout_s=90)
    note = {"title": "Your table is ready"}
    key = f"batch-{run_id}"
    batch = caller.post("/push/batch", {"messages": [{"target": "pin", "pins": ["dave"], "notification": note},
                                                     {"target": "pin", "pins": ["nobody"], "notification": note}]}, **{"Idempotency-Key": key})
    assert batch.status_code == 202 and batch.json() == {"msg_ids": [f"{key}-0", f"{key}-1"]}
    observe.wait_for(lambda: observe.simulator_accepted(pipeline, refreshed)["count"] == 1, 90, "the refreshed token to get the push")
    assert observe.simulator_accepted(pipeline, first)["count"] == 0, "the token before the refresh gets nothing"
    assert state_of(caller, f"{key}-1")["state"] == "not_sent"
    empty = caller.post("/push/batch", {"messages": []})
    assert empty.status_code == 400 and set(empty.json()["fields"]) == {"messages"}
    oversize = {"target": "pin", "pins": ["dave"], "notification": {"title": "x" * pipeline.api_max_body_bytes}}
    large = caller.post("/push/batch", {"messages": [oversize]})
    assert large.status_code == 413
    mute = caller.post("/preferences", {"pin": "dave", "kind": "mute"})
    assert mute.status_code == 400 and set(mute.json()["fields"]) == {"kind"}
    assert caller.post("/preferences", {"pin": "dave", "kind": "unsubscribe"}).status_code == 202
    observe.wait_fanout_read(pipeline, timeout_s=90)
    to_dave = {"target": "pin", "pins": ["dave"], "notification": note}
    offer = {**to_dave, "category": "marketing"}  # unsubscribing stops marketing, not service messages
    assert caller.post("/push", offer, **{"Idempotency-Key": f"unsub-{run_id}"}).status_code == 202
    assert state_of(caller, f"unsub-{run_id}")["counts"].get("suppressed") == 1, "an unsubscribed user's offer is suppressed"
    assert caller.post("/preferences", {"pin": "dave", "kind": "resubscribe"}).status_code == 202
    for kind in ("unbind", "deregister"):
        gone = caller.post(f"/devices/{kind}", {"token": refreshed, "vendor": "apns", **({"pin": "dave"} if kind == "unbind" else {})})
        assert gone.status_code == 202, gone.text
    observe.wait_fanout_read(pipeline, timeout_s=90)
    assert caller.post("/push", to_dave, **{"Idempotency-Key": f"gone-{run_id}"}).status_code == 202
    assert state_of(caller, f"gone-{run_id}")["state"] == "not_sent", "no device left after the unbind"
    assert observe.simulator_accepted(pipeline, refreshed)["count"] == 1


def test_the_4xx_answers_of_the_real_api(pipeline: Settings, run_id: str) -> None:
    caller = made(pipeline, f"err-{run_id}", rate=2)
    bad = caller.post("/push", {"target": "pin", "pins": ["a", "b"], "notification": {"title": 1}})
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"notification.title"}
    bad = caller.post("/push", {"target": "pin", "pins": ["a", "b"], "notification": {"title": "x"}})
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"pins"}
    wrong = httpx.post(f"{pipeline.api_url}/v1/apps/{caller.app}/push", json={}, headers={"X-Pushpipe-App": caller.app,
                                                                                         "Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthenticated"
    large = caller.post("/push", {"target": "pin", "pins": ["a"], "notification": {"title": "x" * (pipeline.api_max_body_bytes + 1)}})
    assert large.status_code == 413
    push = {"target": "pin", "pins": ["nobody"], "notification": {"title": "x"}}
    answers = [caller.post("/push", push) for _ in range(4)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1 and limited[0].json()["error"] == "rate_limited"
    assert "pushpipe_api_errors_total" in httpx.get(f"{pipeline.api_url}/metrics").text
    assert httpx.get(f"{pipeline.api_url}/openapi.json").json()["openapi"] == "3.1.0"


def test_one_apps_credentials_never_reach_another_apps_messages_or_devices(pipeline: Settings, run_id: str) -> None:
    a, b = made(pipeline, f"iso-a-{run_id}"), made(pipeline, f"iso-b-{run_id}")
    bound(pipeline, b, "alice", tok(run_id, 2))
    msg_id = f"m-{uuid.uuid4().hex[:8]}"
    note = {"target": "pin", "pins": ["alice"], "notification": {"title": "for b's alice"}}
    assert b.post("/push", note, **{"Idempotency-Key": msg_id}).status_code == 202
    for answer in (a.post("/push", note, app=b.app), a.post("/devices/deregister", {"token": tok(run_id, 2), "vendor": "apns"}, app=b.app),
                   a.post("/preferences", {"pin": "alice", "kind": "unsubscribe"}, app=b.app), a.message(msg_id, app=b.app)):
        assert answer.status_code == 403, answer.text
    observe.wait_for(lambda: b.message(msg_id).status_code == 200, 120, "b's message counted")
    assert a.message(msg_id).status_code == 404, "a's own message of that id does not exist"
    mine = f"a-{msg_id}"
    assert a.post("/push", note, **{"Idempotency-Key": mine}).status_code == 202  # a's alice has no device
    shown = state_of(a, mine)
    assert not shown["counts"].get("accepted") and shown["state"] == "not_sent"
    assert observe.simulator_accepted(pipeline, tok(run_id, 2))["count"] == 1, "b's device got b's push, and only that"


def young_collections(settings: Settings) -> float:
    """How many young collections the send API's garbage collector made (prometheus_client's GC collector)."""
    found = re.search(r'python_gc_collections_total\{generation="0"\} ([\d.e+]+)', httpx.get(f"{settings.api_url}/metrics").text)
    assert found, "the API's /metrics has no python_gc_collections_total"
    return float(found[1])


def test_the_apis_garbage_collector_is_set_for_streams(pipeline: Settings, run_id: str) -> None:
    """2,000 sends, 100 at a time: each send's objects live until Kafka acknowledges it. With CPython's defaults the
    API made ~20 young collections meanwhile (and moved what they found alive up, into collections that walk every
    connection's objects: p99 at 5,000 sends/s 27-55 ms where 12-17); set for streams (pushpipe/collector.py), none."""
    caller = made(pipeline, f"gc-{run_id}", rate=100_000)
    push = {"target": "pin", "pins": ["nobody"], "notification": {"title": "x"}}

    async def send_all() -> None:
        async with httpx.AsyncClient(base_url=pipeline.api_url, headers=dict(caller.http.headers), timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as http:
            async def one() -> None:
                answer = await http.post(f"/v1/apps/{caller.app}/push", json=push)
                assert answer.status_code == 202, answer.text

            for _ in range(20):
                await asyncio.gather(*(one() for _ in range(100)))

    before = young_collections(pipeline)
    asyncio.run(send_all())
    made_meanwhile = young_collections(pipeline) - before
    assert made_meanwhile <= 2, f"{made_meanwhile:g} young collections during 2,000 sends"
