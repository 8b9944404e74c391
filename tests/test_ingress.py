"""The send API and the app registry without services: the API through Starlette's TestClient, with stand-ins at its
seams (Kafka's outbox, the registry's store, Elasticsearch's message reader); the registry in memory; the CLI with
CliRunner and a registry in memory. tests/test_ingress_e2e.py runs them on the real stack."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pushpipe import cli
from pushpipe.config import Settings, load
from pushpipe.infra import components, kafka, prometheus
from pushpipe.ingress import api, apps, asgi, auth, openapi, shapes, status
from pushpipe.ingress.apps import AppProblem, Registry
from pushpipe.ingress.limits import Buckets, TokenBucket
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import App, MemoryApps, apply_record

Sent = tuple[str, bytes, bytes]


class FakeOutbox:
    """Kafka's stand-in: `acked` holds what Kafka acknowledged; `fail` makes a send fail as an unreachable Kafka does,
    `hold` makes it wait for an acknowledgement that never comes."""

    def __init__(self) -> None:
        self.acked: list[Sent] = []
        self.fail = self.hold = False

    async def send(self, records: list[Sent]) -> None:
        if self.fail:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
        if self.hold:  # as the real Outbox does after its ack_timeout_s
            await asyncio.sleep(0.3)
            raise TimeoutError("Kafka did not acknowledge within 0.3 s")
        self.acked += records

    def close(self) -> None:
        pass


class FakeMessages:
    """Elasticsearch's message documents by id ("app:msg"); `down` makes it not answer."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.down = False
        self.broken: Exception | None = None

    async def message(self, app_id: str, msg_id: str) -> dict[str, Any] | None:
        if self.broken:
            raise self.broken
        if self.down:
            raise status.Unavailable("ConnectError")
        return self.docs.get(keys.message_doc_id(app_id, msg_id))

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Stack:
    """The API with its stand-ins, and two apps: shop (apns and hms only, 5 pushes/s) and other."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.outbox, self.messages, self.clock = settings, FakeOutbox(), FakeMessages(), Clock()
        self.registry = Registry(MemoryApps())
        self.shop, self.shop_secret = self.registry.create("shop", "test", ["apns", "hms"], 5)
        self.other, self.other_secret = self.registry.create("other")
        app = api.create(settings, self.registry.store, self.outbox, self.messages, rates=Buckets(clock=self.clock))
        self.client = TestClient(app, raise_server_exceptions=False)

    def headers(self, app: str = "shop", secret: str | None = None, **more: str) -> dict[str, str]:
        secret = secret if secret is not None else (self.shop_secret if app == "shop" else self.other_secret)
        return {"X-Pushpipe-App": app, "Authorization": f"Bearer {secret}", **more}

    def push(self, body: Any, app: str = "shop", path_app: str | None = None, **headers: str) -> httpx.Response:
        return self.client.post(f"/v1/apps/{path_app or app}/push", json=body, headers=self.headers(app, **headers))

    def sent(self, name: str) -> list[dict[str, Any]]:
        return [codec.decode(name, value) for _, _, value in self.outbox.acked]


PUSH = {"target": "pin", "pins": ["alice"], "notification": {"title": "Shipped", "body": "Arriving Tuesday"}}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load(home=tmp_path_factory.mktemp("home"), api_max_body_bytes=4096, api_max_batch=3, api_ack_timeout_s=0.3)


@pytest.fixture
def stack(settings: Settings) -> Stack:
    return Stack(settings)


def metric(client: TestClient, name: str, **labels: str) -> float:
    """A counter's value from /metrics (0 when it has no such series yet)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- sends -----------------------------------------------------------------------------------------------------

def test_a_push_is_answered_202_with_its_msg_id_once_kafka_acknowledged_it(stack: Stack) -> None:
    answer = stack.push(PUSH, **{"Idempotency-Key": "order-17"})
    assert answer.status_code == 202 and answer.json() == {"msg_ids": ["order-17"]}
    [(topic, key, _)] = stack.outbox.acked
    [request] = stack.sent("PushRequest")
    assert (topic, key) == ("push.requests", b"shop|order-17")
    assert (request["app_id"], request["msg_id"], request["environment"], request["pins"]) == ("shop", "order-17", "test", ["alice"])
    assert request["notification"]["title"] == "Shipped" and request["created_at"] > 0
    assert stack.push(PUSH).json()["msg_ids"][0] != "order-17", "without an Idempotency-Key, a new msg id"


def test_no_202_without_kafkas_acknowledgement(stack: Stack) -> None:
    before = metric(stack.client, "pushpipe_api_pushes_total", app="shop")
    stack.outbox.fail = True
    failed = stack.push(PUSH, **{"Idempotency-Key": "m-1"})
    assert failed.status_code == 503 and failed.json()["error"] == "unavailable" and failed.headers["Retry-After"] == "1"
    assert "msg_ids" not in failed.json()
    stack.outbox.fail, stack.outbox.hold = False, True  # Kafka takes it and never answers: 503 after api_ack_timeout_s
    held = stack.push(PUSH, **{"Idempotency-Key": "m-2"})
    assert held.status_code == 503 and "same Idempotency-Key" in held.json()["reason"]
    assert stack.outbox.acked == [] and metric(stack.client, "pushpipe_api_pushes_total", app="shop") == before
    stack.outbox.hold = False
    assert stack.push(PUSH, **{"Idempotency-Key": "m-2"}).status_code == 202


def test_bad_fields_are_400_each_named_and_nothing_is_queued(stack: Stack) -> None:
    answer = stack.push({"target": "everyone", "pins": ["alice", "bo\x00b"], "colour": "red",
                         "notification": {"title": 5, "badge": "many"}, "ttl_s": 0})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid"
    assert set(answer.json()["fields"]) == {"target", "colour", "ttl_s"}, "the body's own fields first"
    answer = stack.push({**PUSH, "pins": ["alice", "bo\x00b"], "notification": {"title": 5, "badge": "many"}})
    assert set(answer.json()["fields"]) == {"pins[1]", "notification.title", "notification.badge"}
    assert "U+0000" in answer.json()["fields"]["pins[1]"]
    for body, field in (({**PUSH, "pins": ["a", "b"]}, "pins"), ({**PUSH, "deliver_at": 10**13, "ttl_s": 60}, "deliver_at"),
                        ({**PUSH, "notification": {}}, "notification"), ({**PUSH, "recurrence": "every day"}, "recurrence"),
                        ({"notification": {"title": "x"}}, "target"), ({**PUSH, "msg_id": "a|b"}, "msg_id"), ([PUSH], "body"),
                        ({**PUSH, "pins": ["bo\x00b"]}, "pins[0]"), ({**PUSH, "target": "tokens", "pins": [], "tokens": ["t", "a b"]}, "tokens[1]")):
        answer = stack.push(body)
        assert answer.status_code == 400 and field in answer.json()["fields"], (body, answer.json())
    not_json = stack.client.post("/v1/apps/shop/push", content=b"{nope", headers=stack.headers())
    assert not_json.status_code == 400 and not_json.json()["fields"] == {"body": "must be JSON"}
    clash = stack.push({**PUSH, "msg_id": "a"}, **{"Idempotency-Key": "b"})
    assert clash.status_code == 400 and "Idempotency-Key" in clash.json()["fields"]["msg_id"]
    assert stack.outbox.acked == []


def test_a_batch_is_all_or_nothing_with_ids_from_its_idempotency_key(stack: Stack) -> None:
    batch = {"messages": [PUSH, {**PUSH, "msg_id": "own"}, {**PUSH, "pins": ["bob"]}]}
    answer = stack.client.post("/v1/apps/shop/push/batch", json=batch, headers=stack.headers(**{"Idempotency-Key": "k"}))
    assert answer.status_code == 202 and answer.json() == {"msg_ids": ["k-0", "own", "k-2"]}
    assert [r["pins"] for r in stack.sent("PushRequest")] == [["alice"], ["alice"], ["bob"]]
    stack.outbox.acked.clear()
    for body, fields in (({"messages": [PUSH, {**PUSH, "target": "x"}]}, {"messages[1].target"}),
                         ({"messages": [{**PUSH, "msg_id": "a"}, {**PUSH, "msg_id": "a"}]}, {"messages[1].msg_id"}),
                         ({"messages": [PUSH] * 4}, {"messages"}), ({"messages": []}, {"messages"}), ({"pushes": []}, {"pushes", "messages"})):
        answer = stack.client.post("/v1/apps/shop/push/batch", json=body, headers=stack.headers())
        assert answer.status_code == 400 and set(answer.json()["fields"]) == fields, (body, answer.json())
    assert stack.outbox.acked == []


def test_an_oversize_body_is_413_whether_its_length_is_declared_or_not(stack: Stack) -> None:
    big = {**PUSH, "notification": {"title": "x" * 5000}}
    assert stack.push(big).status_code == 413
    chunked = stack.client.post("/v1/apps/shop/push", content=iter([json.dumps(big).encode()]), headers=stack.headers())
    assert chunked.status_code == 413 and chunked.json()["error"] == "too_large"
    assert stack.outbox.acked == []


def test_over_the_apps_rate_is_429_with_retry_after_and_other_apps_go_on(stack: Stack) -> None:
    assert [stack.push(PUSH).status_code for _ in range(5)] == [202] * 5  # shop: 5 pushes/s, a second's worth saved up
    refused = stack.push(PUSH)
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited" and refused.headers["Retry-After"] == "1"
    assert stack.push(PUSH, app="other").status_code == 202
    stack.clock.now += 0.2  # one push's worth
    assert stack.push(PUSH).status_code == 202 and stack.push(PUSH).status_code == 429
    stack.clock.now += 1
    batch = {"messages": [PUSH] * 3}
    assert stack.client.post("/v1/apps/shop/push/batch", json=batch, headers=stack.headers()).status_code == 202
    assert stack.client.post("/v1/apps/shop/push/batch", json=batch, headers=stack.headers()).status_code == 429
    assert len(stack.outbox.acked) == 5 + 1 + 1 + 3


def test_a_token_bucket_lets_a_batch_larger_than_its_burst_through_and_then_waits_for_the_debt() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=10, level=10, at=0)
    assert bucket.take(25, now=0) == 0 and bucket.level == -15
    assert bucket.take(1, now=1) == pytest.approx(0.6)  # -5 after a second: 6 tokens short of one
    assert bucket.take(1, now=1.6) == 0


# --- credentials -----------------------------------------------------------------------------------------------

def test_missing_or_wrong_credentials_are_401(stack: Stack) -> None:
    for headers in ({}, {"X-Pushpipe-App": "shop"}, {"Authorization": f"Bearer {stack.shop_secret}"},
                    stack.headers(secret="wrong"), stack.headers(app="nobody"), {"X-Pushpipe-App": "shop", "Authorization": stack.shop_secret}):
        answer = stack.client.post("/v1/apps/shop/push", json=PUSH, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthenticated", headers
    assert stack.client.get("/v1/apps/shop/messages/m", headers=stack.headers(secret="")).status_code == 401
    assert stack.outbox.acked == []


def test_one_apps_credentials_never_reach_another_apps_messages_devices_or_users(stack: Stack) -> None:
    stack.messages.docs["other:m-1"] = {"app_id": "other", "msg_id": "m-1", "counts": {"accepted": 1}}
    as_shop = stack.headers("shop")
    for method, path, body in (("POST", "/v1/apps/other/push", PUSH), ("POST", "/v1/apps/other/push/batch", {"messages": [PUSH]}),
                               ("POST", "/v1/apps/other/devices/bind", {"token": "t", "vendor": "apns"}),
                               ("POST", "/v1/apps/other/devices/deregister", {"token": "t", "vendor": "apns"}),
                               ("POST", "/v1/apps/other/preferences", {"pin": "alice", "kind": "unsubscribe"}),
                               ("GET", "/v1/apps/other/messages/m-1", None)):
        answer = stack.client.request(method, path, json=body, headers=as_shop)
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden", path
    mine = stack.client.get("/v1/apps/shop/messages/m-1", headers=as_shop)
    assert mine.status_code == 404 and mine.json()["error"] == "not_found", "the same msg id is another message in another app"
    assert stack.client.get("/v1/apps/other/messages/m-1", headers=stack.headers("other")).status_code == 200
    assert stack.outbox.acked == []


def test_a_secret_is_hashed_once_per_process_then_checked_from_memory_and_rotation_ends_the_old_one(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = apps.secret_matches
    monkeypatch.setattr(apps, "secret_matches", lambda h, s: hashed.append(s) or real(h, s))
    assert [stack.push(PUSH, app="other").status_code for _ in range(3)] == [202] * 3
    assert len(hashed) == 1
    old = stack.other_secret
    stack.other, stack.other_secret = stack.registry.rotate_secret("other")
    assert stack.push(PUSH, app="other", secret=old).status_code == 401
    assert stack.push(PUSH, app="other").status_code == 202


def test_wrong_secrets_are_hashed_only_a_few_times_a_second_then_429(settings: Settings) -> None:
    store = MemoryApps()
    app, secret = Registry(store).create("shop")
    clock = Clock()
    check = auth.Authenticator(store, Buckets(clock=clock))
    outcomes = [asyncio.run(check.caller("shop", "Bearer wrong")) for _ in range(int(auth.SLOW_CHECKS_PER_S) + 1)]
    assert [o.status for o in outcomes if isinstance(o, auth.Refusal)] == [401] * int(auth.SLOW_CHECKS_PER_S) + [429]
    clock.now += 1
    assert asyncio.run(check.caller("shop", f"Bearer {secret}")) == app


# --- devices, preferences, status ------------------------------------------------------------------------------

def test_devices_become_device_events_keyed_by_app_and_token(stack: Stack) -> None:
    h = stack.headers()
    bind = {"token": "tok-1", "vendor": "hms", "pin": "alice", "timezone": "Asia/Shanghai", "tags": ["vip"]}
    assert stack.client.post("/v1/apps/shop/devices/bind", json=bind, headers=h).json() == {"accepted": "bind"}
    assert stack.client.post("/v1/apps/shop/devices/report", json={"token": "tok-2", "previous_token": "tok-1", "vendor": "hms"},
                             headers=h).status_code == 202
    for kind in ("unbind", "deregister"):
        assert stack.client.post(f"/v1/apps/shop/devices/{kind}", json={"token": "tok-2", "vendor": "hms"}, headers=h).status_code == 202
    events = stack.sent("DeviceEvent")
    assert [(e["kind"], e["token"], e["app_id"], e["environment"]) for e in events] == [
        ("bind", "tok-1", "shop", "test"), ("report", "tok-2", "shop", "test"), ("unbind", "tok-2", "shop", "test"),
        ("deregister", "tok-2", "shop", "test")]
    assert events[0]["pin"] == "alice" and events[0]["tags"] == ["vip"] and events[1]["previous_token"] == "tok-1"
    assert [(t, k) for t, k, _ in stack.outbox.acked] == [("device.events", b"shop|tok-1")] + [("device.events", b"shop|tok-2")] * 3
    stack.outbox.acked.clear()
    for body, field in (({"token": "t", "vendor": "fcm"}, "vendor"), ({"token": "t", "vendor": "nokia"}, "vendor"),
                        ({"vendor": "hms"}, "token"), ({"token": "t t", "vendor": "hms"}, "token"),
                        ({"token": "t", "vendor": "hms", "timezone": "Mars/Olympus"}, "timezone")):
        answer = stack.client.post("/v1/apps/shop/devices/bind", json=body, headers=h)
        assert answer.status_code == 400 and field in answer.json()["fields"], (body, answer.json())
    answer = stack.client.post("/v1/apps/shop/devices/deregister", json={"token": "t", "vendor": "hms", "pin": "a"}, headers=h)
    assert answer.json()["fields"] == {"pin": "is not a field of this body"}
    assert stack.outbox.acked == []


def test_preferences_become_preference_events_keyed_by_setting(stack: Stack) -> None:
    h = stack.headers()
    for body in ({"pin": "alice", "kind": "opt_out", "category": "marketing"}, {"pin": "alice", "kind": "unsubscribe"},
                 {"pin": "alice", "kind": "set_quiet_hours", "quiet_start": "22:00", "quiet_end": "07:30"},
                 {"pin": "alice", "kind": "set_timezone", "timezone": "Europe/Berlin"}):
        assert stack.client.post("/v1/apps/shop/preferences", json=body, headers=h).json() == {"accepted": body["kind"]}
    assert [k for _, k, _ in stack.outbox.acked] == [b"shop|alice|category:marketing", b"shop|alice|subscription",
                                                     b"shop|alice|quiet_hours", b"shop|alice|timezone"]
    assert stack.sent("PreferenceEvent")[2]["quiet_end"] == "07:30"
    stack.outbox.acked.clear()
    for body, field in (({"pin": "alice", "kind": "set_quiet_hours", "quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start"),
                        ({"pin": "alice", "kind": "set_timezone"}, "timezone"), ({"pin": "alice", "kind": "mute"}, "kind"),
                        ({"kind": "unsubscribe"}, "pin"), ({"pin": "a", "kind": "opt_out", "channel": "sms"}, "channel")):
        answer = stack.client.post("/v1/apps/shop/preferences", json=body, headers=h)
        assert answer.status_code == 400 and field in answer.json()["fields"], (body, answer.json())
    assert stack.outbox.acked == []


def test_a_messages_status_is_its_furthest_state_and_counts(stack: Stack) -> None:
    stack.messages.docs["shop:m-1"] = {"app_id": "shop", "msg_id": "m-1", "category": "transactional", "vendors": ["apns", "hms"],
                                       "counts": {"accepted": 3, "suppressed": 1, "delivered": 2, "retrying": 0}}
    answer = stack.client.get("/v1/apps/shop/messages/m-1", headers=stack.headers())
    assert answer.status_code == 200
    shown = answer.json()
    assert (shown["state"], shown["counts"]["delivered"], shown["final"], shown["vendors"]) == ("delivered", 2, True, ["apns", "hms"])
    assert status.state({"suppressed": 2}) == "not_sent" and status.state({"accepted": 1, "clicked": 1}) == "opened"
    assert stack.client.get("/v1/apps/shop/messages/m-2", headers=stack.headers()).status_code == 404
    assert stack.client.get("/v1/apps/shop/messages/a%7Cb", headers=stack.headers()).status_code == 400
    stack.messages.down = True
    assert stack.client.get("/v1/apps/shop/messages/m-1", headers=stack.headers()).status_code == 503


def test_elasticsearchs_reader_asks_for_the_apps_own_document_and_never_shows_another_apps(settings: Settings) -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.raw_path.decode())
        source = {"app_id": "other" if "forged" in request.url.raw_path.decode() else "shop", "counts": {}}
        return httpx.Response(404 if "gone" in str(request.url) else 200, json={"found": True, "_source": source})

    reader = status.ElasticMessages(settings, transport=httpx.MockTransport(answer))
    assert asyncio.run(reader.message("shop", "m/1")) == {"app_id": "shop", "counts": {}}
    assert asyncio.run(reader.message("shop", "gone")) is None
    assert asyncio.run(reader.message("shop", "forged")) is None
    assert asked[0] == f"/{settings.es_index}/_doc/shop%3Am%2F1"


# --- errors, metrics, documents --------------------------------------------------------------------------------

def test_errors_are_json_counted_and_never_a_traceback(stack: Stack) -> None:
    before = metric(stack.client, "pushpipe_api_errors_total", route="push", error="unauthenticated")
    stack.push(PUSH, secret="wrong")
    assert metric(stack.client, "pushpipe_api_errors_total", route="push", error="unauthenticated") == before + 1
    assert metric(stack.client, "pushpipe_api_requests_total", route="push", status="401") >= 1
    for answer in (stack.client.get("/nowhere"), stack.client.get("/v1/apps/shop/push")):
        assert answer.status_code in (404, 405) and set(answer.json()) == {"error", "reason"}
    stack.messages.broken = RuntimeError(f"boom {stack.shop_secret}")
    broken = stack.client.get("/v1/apps/shop/messages/m-1", headers=stack.headers())
    assert broken.status_code == 500 and broken.json()["error"] == "internal"
    assert "Traceback" not in broken.text and "boom" not in broken.text and stack.shop_secret not in broken.text


def test_secrets_are_never_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, secret = stack.registry.create("third")
    _, rotated = stack.registry.rotate_secret("third", callback=True)
    client = stack.client
    client.post("/v1/apps/third/push", json=PUSH, headers={"X-Pushpipe-App": "third", "Authorization": f"Bearer {rotated}"})
    client.post("/v1/apps/third/push", json=PUSH, headers={"X-Pushpipe-App": "third", "Authorization": f"Bearer {secret}"})
    stack.outbox.fail = True
    client.post("/v1/apps/third/push", json=PUSH, headers={"X-Pushpipe-App": "third", "Authorization": f"Bearer {rotated}"})
    assert "app third created" in caplog.text and "secret rotated" in caplog.text and "did not acknowledge" in caplog.text
    app = stack.registry.store.get("third")
    assert app is not None
    for kept in (secret, rotated, app.secret_hash, app.callback_salt):
        assert kept not in caplog.text
    assert app.secret_hash not in repr(app)


def test_the_openapi_document_names_every_route_and_the_fields_the_api_checks(stack: Stack) -> None:
    document = stack.client.get("/openapi.json").json()
    routed = {route.path for route in stack.client.app.routes if route.path.startswith("/v1/")}  # type: ignore[attr-defined]
    assert set(document["paths"]) == routed
    schemas = document["components"]["schemas"]
    assert set(schemas["Push"]["properties"]) == set(shapes.PUSH)
    assert set(schemas["Notification"]["properties"]) == set(shapes.NOTIFICATION)
    assert set(schemas["Device"]["properties"]) == set(shapes.DEVICE)
    assert set(schemas["Preference"]["properties"]) == set(shapes.PREFERENCE)
    assert document["paths"]["/v1/apps/{app}/push/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["messages"]["maxItems"] == stack.settings.api_max_batch
    assert openapi.document(stack.settings)["openapi"] == "3.1.0"


def test_health_says_whether_the_registry_is_read(settings: Settings) -> None:
    loaded = [False]
    client = TestClient(api.create(settings, MemoryApps(), FakeOutbox(), FakeMessages(), ready=lambda: loaded[0]))
    assert client.get("/health").status_code == 503
    loaded[0] = True
    assert client.get("/health").json() == {"ok": True, "apps": 0}


# --- the registry ----------------------------------------------------------------------------------------------

def test_create_gives_the_secret_once_and_keeps_only_its_hash() -> None:
    registry = Registry(MemoryApps())
    app, secret = registry.create("shop", "test", ["hms", "apns"], 20)
    assert (app.environment, app.vendors, app.rate_per_s) == ("test", ("apns", "hms"), 20.0)
    assert len(secret) >= 43 and secret not in json.dumps(app.record()) and app.secret_hash.startswith("scrypt$")
    assert registry.verify("shop", secret) and not registry.verify("shop", secret + "x") and not registry.verify("nobody", secret)
    for args, said in ((("shop",), "exists already"), (("bad app!",), "app_id"), (("a", "staging"), "environment"),
                       (("a", "test", ["apns", "nokia"]), "nokia"), (("a", "test", [], 0), "rate")):
        with pytest.raises(AppProblem, match=said):
            registry.create(*args)  # type: ignore[arg-type]


def test_rotating_a_secret_ends_the_old_one_and_the_callback_secret_only_when_asked() -> None:
    registry = Registry(MemoryApps())
    app, old = registry.create("shop")
    rotated, new = registry.rotate_secret("shop")
    assert not registry.verify("shop", old) and registry.verify("shop", new)
    assert apps.callback_secret(b"key", rotated) == apps.callback_secret(b"key", app)
    again, _ = registry.rotate_secret("shop", callback=True)
    assert apps.callback_secret(b"key", again) != apps.callback_secret(b"key", app)
    assert apps.callback_secret(b"other key", app) != apps.callback_secret(b"key", app)
    with pytest.raises(AppProblem, match="no app"):
        registry.rotate_secret("nobody")


def test_list_shows_no_secret_hash_or_salt() -> None:
    registry = Registry(MemoryApps())
    app, secret = registry.create("shop", vendors=["apns"])
    listed = registry.list()
    assert listed == [{"app_id": "shop", "environment": "production", "vendors": ["apns"], "rate_per_s": 100.0,
                       "created_at": app.created_at, "updated_at": app.updated_at}]
    assert not {secret, app.secret_hash, app.callback_salt} & set(json.dumps(listed).split('"'))


def test_the_apps_topic_records_replace_and_tombstones_delete() -> None:
    store = MemoryApps()
    app, _ = Registry(MemoryApps()).create("shop")
    apply_record(store, b"shop", codec.encode("App", app.record()))
    assert store.get("shop") == app and App.from_record(codec.decode("App", codec.encode("App", app.record()))) == app
    apply_record(store, b"shop", b"not avro")  # left out, logged
    assert store.get("shop") == app
    apply_record(store, b"shop", None)
    assert store.get("shop") is None


def test_the_apps_topic_is_compacted_and_the_api_is_run_and_scraped(settings: Settings) -> None:
    assert settings.topics.apps in settings.topics.all() and settings.topics.apps in settings.topics.compacted
    assert kafka.topic_config(settings, settings.topics.apps) == {"cleanup.policy": "compact"}
    assert "send-api" in [c.name for c in components.services()]
    jobs = {j["job_name"]: j for j in prometheus.scrape_config(settings)["scrape_configs"]}
    assert jobs["ingress"]["static_configs"][0]["targets"] == ["127.0.0.1:18470"]


# --- the CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture
def registry(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    made = Registry(MemoryApps())
    monkeypatch.setattr(cli, "open_registry", lambda settings: made)
    yield made


def secrets_said(output: str) -> list[str]:
    lines = output.splitlines()
    return [lines[i + 1].strip() for i, line in enumerate(lines) if "secret of" in line]


def test_cli_create_prints_the_secrets_once_and_list_never(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    made = runner.invoke(cli.app, ["app", "create", "shop", "--environment", "test", "--vendors", "apns,hms", "--rate", "50"])
    assert made.exit_code == 0, made.output
    secret, callback = secrets_said(made.output)
    assert registry.verify("shop", secret) and "test, vendors apns, hms, 50 pushes/s" in made.output
    first = registry.store.get("shop")
    assert first is not None
    listed = runner.invoke(cli.app, ["app", "list"])
    assert listed.exit_code == 0 and "shop" in listed.output and "apns,hms" in listed.output
    as_json = runner.invoke(cli.app, ["app", "list", "--json"])
    assert json.loads(as_json.output)[0]["rate_per_s"] == 50.0
    rotated = runner.invoke(cli.app, ["app", "rotate-secret", "shop"])
    [new] = secrets_said(rotated.output)
    assert rotated.exit_code == 0 and registry.verify("shop", new) and not registry.verify("shop", secret)
    [_, new_callback] = secrets_said(runner.invoke(cli.app, ["app", "rotate-secret", "shop", "--callback"]).output)
    assert new_callback != callback
    last = registry.store.get("shop")
    assert last is not None
    kept = {secret, new, callback, new_callback, first.secret_hash, first.callback_salt, last.secret_hash, last.callback_salt}
    for shown in (listed.output, as_json.output, caplog.text):
        assert not kept & set(shown.replace('"', " ").split())


def test_cli_says_what_is_wrong_in_one_line(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(cli.app, ["app", "create", "shop"]).exit_code == 0
    for args, said in ((["app", "create", "shop"], "exists already"), (["app", "create", "x", "--vendors", "nokia"], "unknown vendor"),
                       (["app", "rotate-secret", "nobody"], "no app 'nobody'")):
        failed = runner.invoke(cli.app, args)
        assert failed.exit_code == 1 and said in failed.output and "Traceback" not in failed.output, failed.output

    def down(settings: Settings) -> Registry:
        raise TimeoutError("the app registry (topic apps) was not read within 30 s")

    monkeypatch.setattr(cli, "open_registry", down)
    failed = runner.invoke(cli.app, ["app", "list"])
    assert failed.exit_code == 1 and "is the stack up" in failed.output


def test_cli_rotates_the_callback_secret_alone_and_shows_the_sdk_key_made_with_it(registry: Registry) -> None:
    from pushpipe.gateway import signing

    runner = CliRunner()
    made = runner.invoke(cli.app, ["app", "create", "shop"])
    secret, callback = secrets_said(made.output)
    first = registry.store.get("shop")
    assert first is not None
    key = signing.load_key(load().receipt_key_file)
    assert made.output.splitlines()[-1].strip() == signing.sdk_key(signing.key_for(key, first), "shop")
    rotated = runner.invoke(cli.app, ["app", "rotate-secret", "shop", "--callback-only"])
    assert rotated.exit_code == 0, rotated.output
    [new_callback] = secrets_said(rotated.output)
    last = registry.store.get("shop")
    assert last is not None and new_callback != callback and last.callback_salt != first.callback_salt
    assert registry.verify("shop", secret), "the API secret stays"
    assert rotated.output.splitlines()[-1].strip() == signing.sdk_key(signing.key_for(key, last), "shop")


class Wire:
    """A transport's stand-in: what was written, in the writes it came in."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_an_answers_head_and_body_leave_in_one_write_and_a_close_sends_what_waits() -> None:
    async def answer_twice() -> tuple[Wire, list[bytes]]:
        wire = Wire()
        joined = asgi.JoinedWrites(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
        joined.write(b"{}")
        assert not wire.writes, "nothing leaves before the loop's pass ends"
        await asyncio.sleep(0)
        first = list(wire.writes)
        joined.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        joined.close()
        assert joined.get_extra_info("peername") == "info:peername"
        return wire, first

    wire, first = asyncio.run(answer_twice())
    assert first == [b"HTTP/1.1 202 Accepted\r\n\r\n{}"]
    assert wire.writes[1:] == [b"HTTP/1.1 400 Bad Request\r\n\r\n"] and wire.closed
