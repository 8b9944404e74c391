"""The receipt gateway without services: each vendor's callback as its simulator encodes it, read back; the
signatures; the HTTP answers, with a stand-in for Kafka. tests/test_receipts_e2e.py runs the real gateway."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from pushpipe.config import load
from pushpipe.gateway import app, callbacks, signing
from pushpipe.gateway.callbacks import BadCallback, Heard
from pushpipe.schemas import codec
from pushpipe.schemas.apps import App, MemoryApps
from pushpipe.simulators import meizu, oppo, receipts, vivo, xiaomi
from pushpipe.simulators.batchsim import Receipt

KEY = b"test-key"
NOW = 1_795_348_800.0


def encoded(sim: Any, receipt_list: list[Any]) -> tuple[bytes, str]:
    [(body, content_type)] = sim.encode_receipts(receipt_list)
    return body, content_type


@pytest.mark.parametrize(("vendor", "sim", "kind"), [
    ("xiaomi", xiaomi.XiaomiSimulator(), 1), ("vivo", vivo.VivoSimulator(), 1), ("meizu", meizu.MeizuSimulator(), 1)])
def test_each_per_message_vendor_callback_reads_back_as_its_receipts(vendor: str, sim: Any, kind: int) -> None:
    body, content_type = encoded(sim, [Receipt(kind, "vendor-msg-1", "m-1", ("tokA", "tokB"), NOW)])
    heard, problems = callbacks.parse(vendor, body, content_type, "app")
    assert not problems
    assert [(h.app_id, h.msg_id, h.token, h.kind) for h in heard] == [("app", "m-1", "tokA", "delivered"), ("app", "m-1", "tokB", "delivered")]


def test_oppo_events_and_xiaomi_invalid_targets_and_a_switched_off_bar() -> None:
    body, content_type = encoded(oppo.OppoSimulator(), [Receipt(1, "mid/task/key", "m-1", ("r1",), NOW),
                                                         Receipt(16, "mid/task/key", "m-1", ("r2",), NOW)])
    heard, _ = callbacks.parse("oppo", body, content_type, "app")
    assert [(h.token, h.kind, h.code) for h in heard] == [("r1", "delivered", "push_arrive"), ("r2", "invalid_target", "regid_invalid")]
    doc = {"x1": {"param": "m-2", "type": 16, "targets": "dead", "timestamp": 5}, "x2": {"param": "m-2", "type": 1, "targets": "off",
                                                                                       "barStatus": "Disable", "timestamp": 6}}
    heard, _ = callbacks.parse("xiaomi", f"data={json.dumps(doc)}".encode(), "application/x-www-form-urlencoded", "app")
    assert [(h.token, h.kind, h.ts) for h in heard] == [("dead", "invalid_target", 5), ("off", "switched_off", 6)]


def test_huawei_style_statuses_name_their_app_in_the_bi_tag_and_a_bad_item_stands_alone() -> None:
    good = receipts.receipt("hms-app", "app|m-1", "tok", "req", NOW)
    body = json.dumps({"statuses": [good, {**good, "biTag": "no-app"}, {**good, "status": 5, "token": "t2"}]}).encode()
    heard, problems = callbacks.parse("hms", body, "application/json", "")
    assert [(h.app_id, h.msg_id, h.token, h.kind, h.code) for h in heard] == [
        ("app", "m-1", "tok", "delivered", "0"), ("app", "m-1", "t2", "undelivered", "5")]
    assert [p.item for p in problems] == ["statuses[1]"] and "not <app>|<msg>" in problems[0].reason


@pytest.mark.parametrize(("vendor", "body", "reason"), [
    ("hms", b"{", "not JSON"), ("hms", b'{"x": 1}', "statuses"), ("xiaomi", b"other=1", "'data'"),
    ("meizu", b"cb=%5B%5D", "not a JSON object"), ("oppo", b"{}", "array"), ("hms", b"\xff", "UTF-8")])
def test_a_body_that_is_not_the_vendors_callback_says_why(vendor: str, body: bytes, reason: str) -> None:
    content_type = "application/x-www-form-urlencoded" if vendor in ("xiaomi", "meizu") else "application/json"
    with pytest.raises(BadCallback, match=reason):
        callbacks.parse(vendor, body, content_type, "app")


def test_sdk_events_and_their_bad_items() -> None:
    body = json.dumps({"events": [{"msg_id": "m", "token": "t", "kind": "opened", "ts": 7},
                                  {"msg_id": "m", "token": "t", "kind": "liked", "ts": 7}, {"msg_id": "m"}]}).encode()
    heard, problems = callbacks.sdk_events(body, "app")
    assert heard == [Heard("app", "m", "t", "opened", "opened", 7)]
    assert [(p.item, p.reason.split(" ")[0]) for p in problems] == [("events[1]", "kind"), ("events[2]", "missing")]


def test_signatures_are_per_vendor_and_app_and_fit_the_vendors_callback_limit() -> None:
    assert signing.signature(KEY, "xiaomi", "a") != signing.signature(KEY, "xiaomi", "b") != signing.signature(KEY, "oppo", "b")
    assert signing.signature(b"other", "xiaomi", "a") != signing.signature(KEY, "xiaomi", "a")
    longest = signing.callback_url("http://127.0.0.1:18480", KEY, "xiaomi", "a" * 64)
    assert len(longest.encode()) <= 128, "Xiaomi and Meizu take callback URLs of at most 128 bytes"


class FakeOutbox:
    """Kafka's stand-in: keeps what was sent; `fail` makes the next send fail as an unreachable Kafka would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = False

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if self.fail:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
        self.sent += records

    def close(self) -> None:
        pass


@pytest.fixture
def gateway(tmp_path) -> tuple[TestClient, FakeOutbox]:
    outbox = FakeOutbox()
    return TestClient(app.create(load(home=tmp_path), KEY, outbox)), outbox  # type: ignore[arg-type]


def test_a_callback_is_answered_after_its_receipts_are_written_and_a_forged_one_is_refused(gateway) -> None:
    client, outbox = gateway
    body, content_type = encoded(xiaomi.XiaomiSimulator(), [Receipt(1, "x", "m-1", ("t1", "t2"), NOW)])
    url = signing.callback_url("", KEY, "xiaomi", "app")
    counted = {"source": "vendor", "vendor": "xiaomi", "kind": "delivered"}
    before = REGISTRY.get_sample_value("pushpipe_gateway_receipts_total", counted) or 0
    answer = client.post(url, content=body, headers={"content-type": content_type})
    assert answer.status_code == 200 and answer.json() == {"accepted": 2, "refused": []}
    assert REGISTRY.get_sample_value("pushpipe_gateway_receipts_total", counted) == before + 2
    [(topic, key, value)] = outbox.sent  # one record for the message's receipts
    written = codec.decode("ReceiptBatch", value)["receipts"]
    assert [(r["app_id"], r["msg_id"], r["token"], r["kind"], r["vendor"]) for r in written] == [
        ("app", "m-1", "t1", "delivered", "xiaomi"), ("app", "m-1", "t2", "delivered", "xiaomi")]
    assert (topic, key) == ("push.receipts", b"app|m-1")
    client.post(url, content=body, headers={"content-type": content_type})
    again = [r["receipt_id"] for r in codec.decode("ReceiptBatch", outbox.sent[1][2])["receipts"]]
    assert again == [r["receipt_id"] for r in written], "the same receipt sent again has the same id"
    forged = client.post(url.replace("/app/", "/other/"), content=body, headers={"content-type": content_type})
    assert forged.status_code == 401 and forged.json()["error"] == "bad_signature"
    [(topic, _, letter)] = outbox.sent[2:]
    assert topic == "push.dlq" and codec.decode("DeadLetter", letter)["error"] == "bad_signature"


@pytest.mark.parametrize(("path", "status", "error"), [
    ("/r/apns/app/x", 404, "unknown_vendor"), ("/r/xiaomi/a%7Cb/x", 404, "unknown_app"),
    ("/v1/sdk/app/events", 401, "bad_key")])
def test_unknown_vendors_apps_and_keys_get_their_4xx(gateway, path: str, status: int, error: str) -> None:
    client, outbox = gateway
    answer = client.post(path, content=b"{}", headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert [codec.decode("DeadLetter", v)["error"] for _, _, v in outbox.sent] == [error]


def test_an_sdk_batch_keeps_its_good_events_beside_a_bad_one_and_kafka_down_is_a_503(gateway) -> None:
    client, outbox = gateway
    events = {"events": [{"msg_id": "m", "token": "t", "kind": "opened", "ts": 1}, {"msg_id": "m|x", "token": "t", "kind": "opened", "ts": 1}]}
    headers = {"x-pushpipe-key": signing.sdk_key(KEY, "app")}
    answer = client.post("/v1/sdk/app/events", json=events, headers=headers)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1 and answer.json()["refused"][0]["item"] == "events[1]"
    assert [topic for topic, _, _ in outbox.sent] == ["push.receipts", "push.dlq"]
    outbox.fail = True
    assert client.post("/v1/sdk/app/events", json=events, headers=headers).status_code == 503
    too_big = client.post("/v1/sdk/app/events", content=b"x" * (app.MAX_BODY_BYTES + 1), headers=headers)
    assert (too_big.status_code, too_big.json()["error"]) == (413, "too_large")


def test_a_dead_or_switched_off_device_is_also_news_for_fan_out(gateway) -> None:
    client, outbox = gateway
    doc = {"x1": {"param": "m-2", "type": 16, "targets": "dead", "timestamp": 5},
           "x2": {"param": "m-2", "type": 1, "targets": "off", "barStatus": "Disable", "timestamp": 6}}
    answer = client.post(signing.callback_url("", KEY, "xiaomi", "app"), data={"data": json.dumps(doc)})
    assert answer.status_code == 200 and answer.json()["accepted"] == 2
    news = [codec.decode("DeviceEvent", value) for topic, _, value in outbox.sent if topic == "device.feedback"]
    assert [(n["app_id"], n["pin"], n["token"], n["kind"]) for n in news] == [("app", "", "dead", "invalid_token"), ("app", "", "off", "switch_off")]


def test_a_bad_token_in_a_vendors_list_leaves_the_others_counted() -> None:
    doc = {"x": {"param": "m", "type": 1, "targets": "good1,bad token,good2", "timestamp": 5}}
    heard, problems = callbacks.parse("xiaomi", f"data={json.dumps(doc)}".encode(), "application/x-www-form-urlencoded", "app")
    assert [h.token for h in heard] == ["good1", "good2"]
    assert [(p.item, "whitespace" in p.reason) for p in problems] == [("x.targets", True)]


def test_receipts_setup_prints_the_console_urls_and_the_apps_sdk_key(tmp_path, monkeypatch, capsys) -> None:
    from pushpipe import cli
    from pushpipe.config import load as load_settings
    from pushpipe.ingress.apps import Registry

    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    registry = Registry(MemoryApps([SHOP]))
    monkeypatch.setattr(cli, "open_registry", lambda settings: registry)
    cli.main(["receipts-setup", "stranger"])
    printed = capsys.readouterr().out
    key = signing.load_key(load_settings().receipt_key_file)
    assert f"X-Pushpipe-Key): {signing.sdk_key(key, 'stranger')}  (an app not in the registry)" in printed
    assert signing.console_url(load_settings().gateway_url, key, "hms") in printed and "honor console" in printed
    cli.main(["receipts-setup", "shop"])
    assert f"X-Pushpipe-Key): {signing.sdk_key(signing.key_for(key, SHOP), 'shop')}\n" in capsys.readouterr().out


def test_a_large_callback_is_split_into_records_below_kafkas_limit_and_an_impossible_time_is_the_gateways() -> None:
    heard = [Heard("app", "m-1", f"t{n:06d}" + "x" * 150, "delivered", "1", 10**15 if n == 0 else 1_795_964_000_000)
             for n in range(2500)]
    records = app.receipt_batches(heard, "xiaomi", "vendor", 1_795_964_001_000)
    batches = [codec.decode("ReceiptBatch", value)["receipts"] for _, value in records]
    assert [len(b) for b in batches] == [1000, 1000, 500] and max(len(v) for _, v in records) < 512 * 1024
    assert {key for key, _ in records} == {b"app|m-1"}
    assert batches[0][0]["ts"] == 1_795_964_001_000 and batches[0][1]["ts"] == 1_795_964_000_000


# --- apps of the registry: their own keys, rotated with the callback salt; refused when registration is required ---

SHOP = App("shop", "scrypt$x", "first-salt")


def registry_gateway(tmp_path: Any, registered: MemoryApps, required: bool = False) -> tuple[TestClient, FakeOutbox]:
    outbox = FakeOutbox()
    settings = load(home=tmp_path, app_registry_required=required)
    return TestClient(app.create(settings, KEY, outbox, registered)), outbox  # type: ignore[arg-type]


def xiaomi_receipt(client: TestClient, url: str) -> Any:
    doc = {"x": {"param": "m-1", "type": 1, "targets": "tok", "timestamp": 5}}
    return client.post(url, data={"data": json.dumps(doc)})


def test_a_registered_apps_signatures_and_sdk_key_are_made_with_its_salt_and_rotate_with_it(tmp_path) -> None:
    registered = MemoryApps([SHOP])
    client, outbox = registry_gateway(tmp_path, registered)
    own = signing.key_for(KEY, SHOP)
    assert own != KEY and signing.signature(own, "xiaomi", "shop") != signing.signature(KEY, "xiaomi", "shop")
    assert xiaomi_receipt(client, signing.callback_url("", own, "xiaomi", "shop")).status_code == 200
    assert xiaomi_receipt(client, signing.callback_url("", KEY, "xiaomi", "shop")).status_code == 401, "the salt-less one is not its"
    events = {"events": [{"msg_id": "m-1", "token": "tok", "kind": "opened", "ts": 1}]}
    assert client.post("/v1/sdk/shop/events", json=events, headers={"x-pushpipe-key": signing.sdk_key(own, "shop")}).status_code == 200

    rotated = replace(SHOP, callback_salt="second-salt")
    registered.put(rotated)  # as the follower reads the rotation from the apps topic
    new = signing.key_for(KEY, rotated)
    old_url = signing.callback_url("", own, "xiaomi", "shop")
    answer = xiaomi_receipt(client, old_url)
    assert (answer.status_code, answer.json()["error"]) == (401, "bad_signature")
    assert xiaomi_receipt(client, signing.callback_url("", new, "xiaomi", "shop")).status_code == 200
    old_sdk = client.post("/v1/sdk/shop/events", json=events, headers={"x-pushpipe-key": signing.sdk_key(own, "shop")})
    assert (old_sdk.status_code, old_sdk.json()["error"]) == (401, "bad_key")
    assert client.post("/v1/sdk/shop/events", json=events, headers={"x-pushpipe-key": signing.sdk_key(new, "shop")}).status_code == 200
    assert [codec.decode("DeadLetter", v)["error"] for t, _, v in outbox.sent if t == "push.dlq"] == ["bad_signature"] * 2 + ["bad_key"]


def test_an_unregistered_app_keeps_the_salt_less_keys_unless_registration_is_required(tmp_path) -> None:
    client, _ = registry_gateway(tmp_path, MemoryApps([SHOP]))
    assert xiaomi_receipt(client, signing.callback_url("", KEY, "xiaomi", "stranger")).status_code == 200
    strict, outbox = registry_gateway(tmp_path, MemoryApps([SHOP]), required=True)
    before = app.REFUSED.labels("vendor", "unknown_app")._value.get()
    answer = xiaomi_receipt(strict, signing.callback_url("", KEY, "xiaomi", "stranger"))
    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_app")
    assert app.REFUSED.labels("vendor", "unknown_app")._value.get() == before + 1
    [(topic, _, letter)] = outbox.sent
    dead = codec.decode("DeadLetter", letter)
    assert (topic, dead["error"], dead["app_id"]) == ("push.dlq", "unknown_app", "stranger")
    sdk = strict.post("/v1/sdk/stranger/events", json={"events": []}, headers={"x-pushpipe-key": signing.sdk_key(KEY, "stranger")})
    assert (sdk.status_code, sdk.json()["error"]) == (404, "unknown_app")
    assert xiaomi_receipt(strict, signing.callback_url("", signing.key_for(KEY, SHOP), "xiaomi", "shop")).status_code == 200


def test_a_console_callback_keeps_registered_apps_receipts_and_refuses_the_others_when_required(tmp_path) -> None:
    client, outbox = registry_gateway(tmp_path, MemoryApps([SHOP]), required=True)
    statuses = [receipts.receipt("hms-app", f"{a}|m-1", "tok", "req", NOW) for a in ("shop", "stranger", "stranger")]
    answer = client.post(signing.console_url("", KEY, "hms"), json={"statuses": statuses})
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert [r["item"] for r in answer.json()["refused"]] == ["app stranger"] and "unknown_app" in answer.json()["refused"][0]["reason"]
    assert [t for t, _, _ in outbox.sent] == ["push.receipts", "push.dlq"]


def test_callbacks_wait_for_the_registrys_first_read(tmp_path) -> None:
    outbox = FakeOutbox()
    client = TestClient(app.create(load(home=tmp_path), KEY, outbox, MemoryApps(), ready=lambda: False))  # type: ignore[arg-type]
    answer = xiaomi_receipt(client, signing.callback_url("", KEY, "xiaomi", "shop"))
    assert (answer.status_code, answer.json()["error"]) == (503, "unavailable") and not outbox.sent
    assert client.get("/health").status_code == 503


def test_dispatch_signs_a_registered_apps_callback_urls_with_its_key_and_follows_a_rotation(tmp_path) -> None:
    from pushpipe.jobs.dispatch import receipt_callbacks

    settings = load(home=tmp_path)
    key = signing.load_key(settings.receipt_key_file, create=True)
    registered = MemoryApps([SHOP])
    callback_url = receipt_callbacks(settings, registered)
    assert callback_url is not None
    client = TestClient(app.create(settings, key, FakeOutbox(), registered))  # type: ignore[arg-type]
    url = callback_url("xiaomi", "shop")
    assert url == signing.callback_url(settings.gateway_url, signing.key_for(key, SHOP), "xiaomi", "shop")
    assert callback_url("xiaomi", "stranger") == signing.callback_url(settings.gateway_url, key, "xiaomi", "stranger")
    assert callback_url("apns", "shop") == "", "APNs takes no callback URL"
    registered.put(replace(SHOP, callback_salt="second-salt"))
    rotated = callback_url("xiaomi", "shop")
    assert rotated != url and xiaomi_receipt(client, rotated.removeprefix(settings.gateway_url)).status_code == 200
    assert xiaomi_receipt(client, url.removeprefix(settings.gateway_url)).status_code == 401
