"""Pure Xiaomi, OPPO, vivo, Meizu and Umeng pieces, no network: payloads, signatures, limits,
response classification, the shared batch plumbing, configs and the registry."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from contract_cases import note, send_once
from pushpipe.connectors import hms, honor, meizu, oppo, umeng, vivo, xiaomi
from pushpipe.connectors.base import InvalidNotification, Notification, Outcome, TokenResult, Vendor, VendorError, reveal
from pushpipe.connectors.batch_adapter import chunks, merge_malformed, seconds_until_china_hour
from pushpipe.connectors.config import parse
from pushpipe.connectors.credentials import AuthTokenCache
from pushpipe.connectors.registry import create_adapter
from pushpipe.connectors.signing import form_body, md5_hex, parse_form, sha256_hex, sorted_params
from pushpipe.jobs.fanout import records
from pushpipe.jobs.policy.classify import message_class
from pushpipe.jobs.policy.decide import PolicyConfig
from pushpipe.jobs.sender import notification_of
from pushpipe.producer import push_request

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC = 2023-11-15 06:13:20 UTC+8
TO_MIDNIGHT = 64_000.0  # until 2023-11-16 00:00 UTC+8
TO_SEVEN = 2_800.0  # until 2023-11-15 07:00 UTC+8
CLOSED = "https://127.0.0.1:9"  # nothing listens: any request would fail with a transport error
TOKENS = ["t1", "t2", "t3"]


def reason(exc_info: pytest.ExceptionInfo[InvalidNotification]) -> str:
    return exc_info.value.reason


def outcomes(results: list[TokenResult]) -> list[tuple[Outcome, str]]:
    return [(r.outcome, r.code) for r in results]


CONFIGS: dict[Vendor, Any] = {
    Vendor.XIAOMI: xiaomi.XiaomiConfig(app_secret="mi-secret", package_name="com.example", base_url=CLOSED),
    Vendor.OPPO: oppo.OppoConfig(app_key="ok", master_secret="oppo-secret", base_url=CLOSED),
    Vendor.VIVO: vivo.VivoConfig(app_id="10004", app_key="vk", app_secret="vivo-secret", base_url=CLOSED),
    Vendor.MEIZU: meizu.MeizuConfig(app_id="100999", app_secret="mz-secret", base_url=CLOSED),
    Vendor.UMENG: umeng.UmengConfig(app_key="uk", app_master_secret="um-secret", base_url=CLOSED),
}


# ---- signing -------------------------------------------------------------------------------------

def test_digests_are_lowercase_hex_of_utf8() -> None:
    assert md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert md5_hex("标题") == hashlib.md5("标题".encode()).hexdigest()


def test_sorted_params_and_form_round_trip() -> None:
    assert sorted_params({"k2": "v2", "k1": "v1", "k3": "a=b"}) == "k1=v1k2=v2k3=a=b"
    fields = {"a": "x y", "b": "+/=,;", "c": "标"}
    assert parse_form(form_body(fields)) == fields


def test_meizu_signature_matches_the_vector_in_meizus_readme() -> None:
    params = {"appId": "10000", "pushIds": "RA50c6348036344485d01776773577c64740465480a6b",
              "messageJson": '{"title":"title","content":"content","pushTimeInfo":{"offLine":1,"validTime":24}}'}
    assert meizu.sign(params, "<APP_SECRET>") == "ac076ff25d9900015a681cb5172aa53b"


def test_oppo_auth_fields_sign_sha256_of_key_timestamp_ms_secret() -> None:
    fields = oppo.auth_fields(CONFIGS[Vendor.OPPO], NOW)
    assert fields["timestamp"] == "1700000000000" and fields["app_key"] == "ok"
    assert fields["sign"] == hashlib.sha256(b"ok1700000000000oppo-secret").hexdigest()


def test_vivo_auth_body_signs_md5_of_id_key_timestamp_secret() -> None:
    body = vivo.auth_body(CONFIGS[Vendor.VIVO], NOW)
    assert body == {"appId": "10004", "appKey": "vk", "timestamp": "1700000000000",
                    "sign": hashlib.md5(b"10004vk1700000000000vivo-secret").hexdigest()}


def test_umeng_signs_method_url_body_and_secret() -> None:
    body = b'{"appkey":"uk"}'
    assert umeng.sign("https://msgapi.umeng.com/api/send", body, "s") == \
        hashlib.md5(b'POSThttps://msgapi.umeng.com/api/send{"appkey":"uk"}s').hexdigest()
    path = umeng.signed_path(CONFIGS[Vendor.UMENG], body)
    assert path == "/api/send?sign=" + umeng.sign(CLOSED + "/api/send", body, "um-secret")


# ---- shared batch plumbing -----------------------------------------------------------------------

def test_daily_caps_reset_at_midnight_china_time() -> None:
    assert seconds_until_china_hour(NOW) == TO_MIDNIGHT
    assert seconds_until_china_hour(NOW, 7) == TO_SEVEN
    assert seconds_until_china_hour(NOW + TO_MIDNIGHT) == 86_400  # at midnight: the next one


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cached_token_is_fetched_once_refreshed_by_age_and_invalidated_once() -> None:
    clock, fetched = FakeClock(NOW), []

    async def fetch() -> str:
        fetched.append(clock.now)
        return f"tok{len(fetched)}"

    async def scenario() -> list[str]:
        cache = AuthTokenCache(fetch, clock=clock, lifetime_s=1000, refresh_s=100)
        seen = [await cache.get(), await cache.get()]
        clock.now += 100
        seen.append(await cache.get())
        assert cache.invalidate("tok2") and not cache.invalidate("tok2") and not cache.invalidate("tok1")
        seen.append(await cache.get())
        clock.now -= 1000  # clock went backwards: do not trust the cached age
        seen.append(await cache.get())
        return seen

    assert asyncio.run(scenario()) == ["tok1", "tok1", "tok2", "tok3", "tok4"]


def test_concurrent_gets_share_one_fetch() -> None:
    calls = []

    async def fetch() -> str:
        calls.append(1)
        await asyncio.sleep(0.01)
        return "tok"

    async def scenario() -> list[str]:
        cache = AuthTokenCache(fetch, clock=FakeClock(NOW), lifetime_s=1000, refresh_s=100)
        return list(await asyncio.gather(*(cache.get() for _ in range(5))))

    assert asyncio.run(scenario()) == ["tok"] * 5 and len(calls) == 1


def test_chunks_and_merge_keep_token_order() -> None:
    assert list(chunks(["a", "b", "c", "d", "e"], 2)) == [["a", "b"], ["c", "d"], ["e"]]
    sent = [TokenResult("a", Outcome.ACCEPTED), TokenResult("c", Outcome.THROTTLED)]
    merged = merge_malformed(["a", "b,x", "c", ""], ["a", "c"], sent)
    assert [(r.token, r.outcome, r.reason) for r in merged] == [
        ("a", Outcome.ACCEPTED, ""), ("b,x", Outcome.INVALID_TOKEN, "MalformedToken"),
        ("c", Outcome.THROTTLED, ""), ("", Outcome.INVALID_TOKEN, "MalformedToken")]


def test_vendor_error_becomes_one_result_per_token() -> None:
    err = VendorError(Outcome.THROTTLED, "33", "daily", 5.0)
    assert err.results(["a", "b"]) == [TokenResult("a", Outcome.THROTTLED, "33", "daily", 5.0),
                                       TokenResult("b", Outcome.THROTTLED, "33", "daily", 5.0)]


# ---- configs and registry ------------------------------------------------------------------------

SECRETS = {Vendor.XIAOMI: "app_secret", Vendor.OPPO: "master_secret", Vendor.VIVO: "app_secret",
           Vendor.MEIZU: "app_secret", Vendor.UMENG: "app_master_secret"}


@pytest.mark.parametrize("vendor", list(CONFIGS))
def test_configs_mask_their_secrets(vendor: Vendor) -> None:
    config = CONFIGS[vendor]
    secret = str(getattr(config, SECRETS[vendor]).reveal())
    assert secret.endswith("secret") and secret not in repr(config) and "**********" in repr(config)


@pytest.mark.parametrize(("vendor", "overrides"), [
    (Vendor.XIAOMI, {"package_name": ""}), (Vendor.XIAOMI, {"app_secret": ""}),
    (Vendor.XIAOMI, {"callback_url": "https://x/" + "c" * 120}), (Vendor.XIAOMI, {"callback_type": 4}),
    (Vendor.OPPO, {"token_refresh_s": 24 * 3600}), (Vendor.OPPO, {"app_key": ""}),
    (Vendor.VIVO, {"classification": 2}), (Vendor.VIVO, {"token_refresh_s": 10}),
    (Vendor.MEIZU, {"callback_type": 4}), (Vendor.UMENG, {"base_url": "msgapi.umeng.com"}),
    (Vendor.UMENG, {"max_batch": 0}), (Vendor.MEIZU, {"timeout_s": 0}),
])
def test_configs_are_validated(vendor: Vendor, overrides: dict[str, Any]) -> None:
    config = CONFIGS[vendor]
    with pytest.raises(ValueError):
        dataclasses.replace(config, **overrides)


def test_vendors_file_entries_parse_and_credentials_files_load(tmp_path: Path) -> None:
    configs = parse({"meizu": {"app_id": "1", "app_secret": "s", "base_url": "https://sim", "verify": False},
                     "umeng": {"app_key": "k", "app_master_secret": "s"}})
    meizu_config, umeng_config = configs["meizu"], configs["umeng"]
    assert isinstance(meizu_config, meizu.MeizuConfig) and isinstance(umeng_config, umeng.UmengConfig)
    assert umeng_config.base_url == umeng.PRODUCTION_URL
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"app_key": "k", "master_secret": "m"}))
    loaded = oppo.OppoConfig.from_credentials(creds, base_url="https://sim")
    assert (loaded.app_key, loaded.base_url, reveal(loaded.master_secret)) == ("k", "https://sim", "m")


@pytest.mark.parametrize(("vendor", "adapter", "max_batch"), [
    (Vendor.XIAOMI, xiaomi.XiaomiAdapter, 1000), (Vendor.OPPO, oppo.OppoAdapter, 1000),
    (Vendor.VIVO, vivo.VivoAdapter, 1000), (Vendor.MEIZU, meizu.MeizuAdapter, 100),
    (Vendor.UMENG, umeng.UmengAdapter, 500)])
def test_registry_builds_each_batch_vendor(vendor: Vendor, adapter: type, max_batch: int) -> None:
    built = create_adapter(vendor.value, CONFIGS[vendor])
    assert isinstance(built, adapter) and built.vendor is vendor and built.max_batch == max_batch
    with pytest.raises(TypeError):
        create_adapter(vendor, CONFIGS[Vendor.UMENG if vendor is not Vendor.UMENG else Vendor.MEIZU])


# ---- adapters without a network ------------------------------------------------------------------

def run(vendor: Vendor, n: Notification, tokens: list[str]) -> list[TokenResult]:
    return asyncio.run(send_once(create_adapter(vendor, CONFIGS[vendor]), n, tokens))


INVALID: dict[Vendor, tuple[dict[str, Any], str]] = {
    Vendor.XIAOMI: ({"title": "t" * 50}, "TitleTooLong"), Vendor.OPPO: ({"title": ""}, "MissingTitle"),
    Vendor.VIVO: ({"body": "标" * 51}, "BodyTooLong"), Vendor.MEIZU: ({"body": ""}, "MissingBody"),
    Vendor.UMENG: ({"data": {"pad": "x" * 5000}}, "PayloadTooLarge")}


@pytest.mark.parametrize("vendor", list(INVALID))
def test_invalid_notifications_are_rejected_without_a_network_call(vendor: Vendor) -> None:
    overrides, why = INVALID[vendor]
    results = run(vendor, note(**overrides), TOKENS)
    assert [(r.outcome, r.code, r.reason) for r in results] == [(Outcome.REJECTED, "", why)] * 3


@pytest.mark.parametrize("vendor", list(CONFIGS))
def test_unreachable_vendor_is_unavailable_for_every_token(vendor: Vendor) -> None:
    results = run(vendor, note(), TOKENS)
    assert outcomes(results) == [(Outcome.UNAVAILABLE, "transport")] * 3 and [r.token for r in results] == TOKENS


def test_tokens_with_the_separator_are_invalid_locally_and_nothing_else_is_sent() -> None:
    assert [(r.outcome, r.reason) for r in run(Vendor.OPPO, note(), ["a;b", ""])] == \
        [(Outcome.INVALID_TOKEN, "MalformedToken")] * 2
    assert run(Vendor.VIVO, note(), ["a,b"])[0].code == "transport"  # JSON list: a comma is fine


def test_send_before_open_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="before open"):
        asyncio.run(create_adapter(Vendor.MEIZU, CONFIGS[Vendor.MEIZU]).send(note(), TOKENS))


def test_no_tokens_no_results() -> None:
    assert run(Vendor.XIAOMI, note(), []) == []


# ---- Xiaomi --------------------------------------------------------------------------------------

def test_xiaomi_form_fields() -> None:
    config = xiaomi.XiaomiConfig(app_secret="s", package_name="com.example", callback_url="https://cb/r",
                                 channel_id="ch1")
    fields = xiaomi.build_fields(note(collapse_id="c1", ttl_s=600), config)
    assert fields == {
        "restricted_package_name": "com.example", "pass_through": "0", "notify_type": "-1", "title": "Hi",
        "description": "There", "payload": '{"order":"42","msg_id":"m-1"}', "time_to_live": "600000",
        "notify_id": xiaomi.notify_id("c1"), "extra.notify_effect": "1", "extra.channel_id": "ch1",
        "extra.callback": "https://cb/r", "extra.callback.param": "m-1", "extra.callback.type": "19"}
    assert xiaomi.auth_header("s") == {"authorization": "key=s"}


def test_xiaomi_silent_message_without_title_and_body() -> None:
    fields = xiaomi.build_fields(note(title="", body=""), CONFIGS[Vendor.XIAOMI])
    assert fields["pass_through"] == "1" and "extra.callback" not in fields and "notify_id" not in fields
    with pytest.raises(InvalidNotification, match="MissingTitle"):
        xiaomi.build_fields(note(title=""), CONFIGS[Vendor.XIAOMI])


@pytest.mark.parametrize(("overrides", "why"), [
    ({"title": "t" * 50}, "TitleTooLong"), ({"body": "b" * 128}, "BodyTooLong"),
    ({"data": {"pad": "x" * 4080}}, "PayloadTooLarge")])
def test_xiaomi_limits(overrides: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidNotification) as err:
        xiaomi.build_fields(note(**overrides), CONFIGS[Vendor.XIAOMI])
    assert reason(err) == why


def test_xiaomi_limits_are_exclusive_upper_bounds() -> None:
    pad = 4095 - len('{"order":"","msg_id":"m-1"}')
    fields = xiaomi.build_fields(note(title="t" * 49, body="b" * 127, data={"order": "x" * pad}),
                                 CONFIGS[Vendor.XIAOMI])
    assert len(fields["payload"].encode()) == 4095


def test_xiaomi_ttl_and_notify_id() -> None:
    assert [xiaomi.ttl_ms(s) for s in (0, 1, 3600, 30 * 86_400)] == ["1000", "1000", "3600000", str(14 * 86_400_000)]
    assert xiaomi.notify_id("a") == xiaomi.notify_id("a") != xiaomi.notify_id("b") and xiaomi.notify_id("a").isdigit()


def _mi(doc: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> list[TokenResult]:
    return xiaomi.classify_response(TOKENS, status, headers or {}, json.dumps(doc).encode(), NOW)


def test_xiaomi_accepted_with_bad_regids() -> None:
    results = _mi({"code": 0, "result": "ok", "data": {"id": "scm1", "bad_regids": "t2"}})
    assert outcomes(results) == [(Outcome.ACCEPTED, "0"), (Outcome.INVALID_TOKEN, "0"), (Outcome.ACCEPTED, "0")]
    assert results[0].vendor_msg_id == "scm1" and results[1].reason == "BadRegId"
    assert outcomes(_mi({"code": 0, "data": {"id": "x", "badRegIds": "t1,t3"}}))[2] == (Outcome.INVALID_TOKEN, "0")


@pytest.mark.parametrize(("code", "outcome"), [(20301, Outcome.INVALID_TOKEN), (10023, Outcome.THROTTLED),
                                               (10022, Outcome.THROTTLED), (21301, Outcome.REJECTED),
                                               (10017, Outcome.REJECTED)])
def test_xiaomi_error_codes(code: int, outcome: Outcome) -> None:
    results = _mi({"code": code, "result": "error", "reason": "why"})
    assert outcomes(results) == [(outcome, str(code))] * 3 and results[0].retry_after_s is None
    assert results[0].reason == "why"


def test_xiaomi_http_failures() -> None:
    throttled = _mi({}, 429, {"retry-after": "7"})
    assert outcomes(throttled) == [(Outcome.THROTTLED, "429")] * 3 and throttled[0].retry_after_s == 7.0
    assert outcomes(_mi({}, 503)) == [(Outcome.UNAVAILABLE, "503")] * 3
    garbage = xiaomi.classify_response(TOKENS, 200, {}, b"<html>", NOW)
    assert [(r.outcome, r.reason) for r in garbage] == [(Outcome.UNAVAILABLE, "BadResponse")] * 3


# ---- OPPO ----------------------------------------------------------------------------------------

def test_oppo_message_content_and_broadcast_fields() -> None:
    config = oppo.OppoConfig(app_key="k", master_secret="m", channel_id="ch", callback_url="https://cb")
    assert oppo.build_content(note(ttl_s=600), config) == {
        "title": "Hi", "content": "There", "app_message_id": "m-1", "click_action_type": "0",
        "action_parameters": '{"order":"42","msg_id":"m-1"}', "off_line": "true", "off_line_ttl": "600",
        "channel_id": "ch", "call_back_url": "https://cb", "call_back_parameter": "m-1"}
    assert oppo.broadcast_fields("mid", ["a", "b"]) == {"message_id": "mid", "target_type": "2", "target_value": "a;b"}


def test_oppo_ttl_and_limits() -> None:
    now_only = oppo.build_content(note(ttl_s=0), CONFIGS[Vendor.OPPO])
    assert (now_only["off_line"], now_only["off_line_ttl"]) == ("false", "1")
    assert oppo.build_content(note(ttl_s=30 * 86_400), CONFIGS[Vendor.OPPO])["off_line_ttl"] == str(10 * 86_400)
    oppo.build_content(note(title="t" * 50, body="b" * 200), CONFIGS[Vendor.OPPO])
    for overrides, why in (({"title": "t" * 51}, "TitleTooLong"), ({"body": "b" * 201}, "BodyTooLong")):
        with pytest.raises(InvalidNotification) as err:
            oppo.build_content(note(**overrides), CONFIGS[Vendor.OPPO])
        assert reason(err) == why


def _oppo(code: int, data: dict[str, Any] | None = None) -> list[TokenResult]:
    return oppo.classify_broadcast(TOKENS, oppo.Reply(code, "msg", data or {}), NOW)


def test_oppo_broadcast_per_target_failures() -> None:
    results = _oppo(0, {"message_id": "m", "task_id": "task", "10000": ["t1"], "10001": ["t3"]})
    assert outcomes(results) == [(Outcome.INVALID_TOKEN, "10000"), (Outcome.ACCEPTED, "0"),
                                 (Outcome.REJECTED, "10001")]
    assert results[1].vendor_msg_id == "task"


@pytest.mark.parametrize(("code", "outcome", "retry_after"), [
    (-2, Outcome.THROTTLED, None), (13, Outcome.THROTTLED, None), (55, Outcome.THROTTLED, None),
    (33, Outcome.THROTTLED, TO_MIDNIGHT), (11, Outcome.UNAVAILABLE, None), (-1, Outcome.UNAVAILABLE, None),
    (16, Outcome.REJECTED, None), (41, Outcome.REJECTED, None)])
def test_oppo_codes(code: int, outcome: Outcome, retry_after: float | None) -> None:
    results = _oppo(code)
    assert outcomes(results) == [(outcome, str(code))] * 3 and results[0].retry_after_s == retry_after


def test_oppo_reply_parsing_raises_for_http_failures() -> None:
    with pytest.raises(VendorError) as err:
        oppo.parse_reply(502, {}, b"", NOW)
    assert err.value.outcome is Outcome.UNAVAILABLE
    with pytest.raises(VendorError) as err:
        oppo.parse_reply(200, {}, b'{"message": "no code"}', NOW)
    assert err.value.reason == "BadResponse"
    assert oppo.parse_reply(200, {}, b'{"code": 0, "data": {"auth_token": "a"}}', NOW).data == {"auth_token": "a"}


# ---- vivo ----------------------------------------------------------------------------------------

def test_vivo_width_counts_cjk_twice() -> None:
    assert [vivo.width(s) for s in ("abc", "标题", "ａ", "😀", "a标")] == [3, 4, 2, 1, 3]


def test_vivo_message_single_and_list_bodies() -> None:
    config = vivo.VivoConfig(app_id="1", app_key="k", app_secret="s", callback_url="https://cb")
    message = vivo.build_message(note(ttl_s=3600), config)
    assert message == {"appId": "1", "notifyType": 4, "title": "Hi", "content": "There", "timeToLive": 3600,
                       "skipType": 1, "networkType": -1, "classification": 0,
                       "clientCustomMap": {"order": "42", "msg_id": "m-1"}, "requestId": vivo.request_id("m-1"),
                       "extra": {"callback": "https://cb", "callback.param": "m-1"}}
    single = vivo.single_body(message, "r1")
    assert single["regId"] == "r1" and single["extra"] == {"callback": "https://cb", "callback.param": "m-1"}
    assert single["requestId"] == vivo.request_id("m-1", "r1") != message["requestId"]
    listed = vivo.push_list_body(message, "task", ["r1", "r2"])
    assert listed == {"appId": "1", "regIds": ["r1", "r2"], "taskId": "task",
                      "requestId": vivo.request_id("m-1", "r1", "r2")}
    assert "extra" not in listed and len(listed["requestId"]) <= 64


@pytest.mark.parametrize(("message_class", "default", "expected"), [("service", 0, 1), ("marketing", 1, 0), ("", 1, 1), ("", 0, 0)])
def test_vivo_classification_follows_the_policys_class(message_class: str, default: int, expected: int) -> None:
    config = vivo.VivoConfig(app_id="1", app_key="k", app_secret="s", classification=default)  # type: ignore[arg-type]
    assert vivo.build_message(note(category="whatever", message_class=message_class), config)["classification"] == expected


@pytest.mark.parametrize(("category", "message_class", "expected"), [
    ("im", "service", "IM"), ("transactional", "service", None), ("news", "marketing", "MARKETING"), ("IM", "", None)])
def test_hms_category_follows_the_policys_class(category: str, message_class: str, expected: str | None) -> None:
    android = hms.build_message(note(category=category, message_class=message_class), ["t"])["android"]
    assert android.get("category") == expected


@pytest.mark.parametrize(("message_class", "priority", "expected"), [("marketing", "high", "LOW"), ("service", "low", "NORMAL"),
                                                                      ("", "low", "LOW")])
def test_honor_importance_follows_the_policys_class(message_class: str, priority: str, expected: str) -> None:
    assert honor.importance(note(message_class=message_class, priority=priority)) == expected


def test_one_class_from_fan_out_to_the_adapters() -> None:
    """The policy's classes (a policy file can add "orders": "service") decide what dispatch tells the vendors."""
    policy = PolicyConfig(classes={"orders": "service"})
    request = {**push_request("a", ["u"], "t", "b", category="orders"), "message_class": message_class("orders", policy.classes)}
    batch = records.batch(request, "vivo", [("t1", "u", "", "")], 1, "pin:u:0")
    assert batch["message_class"] == "service" and notification_of(batch).message_class == "service"
    assert notification_of({**batch, "message_class": ""}).message_class == "marketing", "an old batch: the default classes"


def test_vivo_ttl_is_clamped_and_limits_checked() -> None:
    ttl = [vivo.build_message(note(ttl_s=s), CONFIGS[Vendor.VIVO])["timeToLive"] for s in (0, 86_400, 30 * 86_400)]
    assert ttl == [900, 86_400, 7 * 86_400]
    vivo.build_message(note(title="标" * 20, body="b" * 100), CONFIGS[Vendor.VIVO])
    for overrides, why in (({"title": "t" * 41}, "TitleTooLong"), ({"body": "标" * 51}, "BodyTooLong"),
                           ({"data": {"pad": "x" * 1000}}, "PayloadTooLarge"), ({"title": ""}, "MissingTitle")):
        with pytest.raises(InvalidNotification) as err:
            vivo.build_message(note(**overrides), CONFIGS[Vendor.VIVO])
        assert reason(err) == why


def _vivo(result: int, **doc: Any) -> list[TokenResult]:
    return vivo.classify_push(TOKENS, vivo.Reply(result, "desc", {"result": result, **doc}), NOW)


def test_vivo_invalid_users_are_dead_tokens() -> None:
    results = _vivo(0, taskId="task", invalidUsers=[{"status": 2, "userId": "t2"}])
    assert outcomes(results) == [(Outcome.ACCEPTED, "0"), (Outcome.INVALID_TOKEN, "invalidUsers.2"),
                                 (Outcome.ACCEPTED, "0")]
    assert results[0].vendor_msg_id == "task"


@pytest.mark.parametrize(("code", "outcome", "retry_after"), [
    (10070, Outcome.THROTTLED, TO_MIDNIGHT), (10252, Outcome.THROTTLED, TO_MIDNIGHT),
    (10254, Outcome.THROTTLED, TO_MIDNIGHT), (10071, Outcome.THROTTLED, TO_SEVEN),
    (10000, Outcome.UNAVAILABLE, None), (10302, Outcome.INVALID_TOKEN, None), (10055, Outcome.REJECTED, None)])
def test_vivo_codes(code: int, outcome: Outcome, retry_after: float | None) -> None:
    results = _vivo(code)
    assert outcomes(results) == [(outcome, str(code))] * 3 and results[0].retry_after_s == retry_after


# ---- Meizu ---------------------------------------------------------------------------------------

def test_meizu_message_json() -> None:
    config = meizu.MeizuConfig(app_id="1", app_secret="s", callback_url="https://cb")
    message = json.loads(meizu.build_message_json(note(collapse_id="chat-7", ttl_s=7200), config))
    assert message == {
        "noticeBarInfo": {"noticeBarType": 0, "title": "Hi", "content": "There"},
        "clickTypeInfo": {"clickType": 0, "parameters": {"order": "42", "msg_id": "m-1"}},
        "pushTimeInfo": {"offLine": 1, "validTime": 2}, "advanceInfo": {"notifyKey": "chat-7"},
        "extra": {"callback": "https://cb", "callback.param": "m-1", "callback.type": "3"}}


def test_meizu_notify_key_valid_hours_and_limits() -> None:
    assert meizu.notify_key("ok_key-8") == "ok_key-8"
    assert meizu.notify_key("conversation:42") == md5_hex("conversation:42")[:8]
    assert [meizu.valid_hours(s) for s in (0, 1, 3600, 3601, 100 * 3600)] == [1, 1, 1, 2, 72]
    assert json.loads(meizu.build_message_json(note(ttl_s=0), CONFIGS[Vendor.MEIZU]))["pushTimeInfo"]["offLine"] == 0
    meizu.build_message_json(note(title="t" * 32, body="b" * 100), CONFIGS[Vendor.MEIZU])
    for overrides, why in (({"title": "t" * 33}, "TitleTooLong"), ({"body": "b" * 101}, "BodyTooLong"),
                           ({"body": ""}, "MissingBody"), ({"title": ""}, "MissingTitle")):
        with pytest.raises(InvalidNotification) as err:
            meizu.build_message_json(note(**overrides), CONFIGS[Vendor.MEIZU])
        assert reason(err) == why


def test_meizu_signed_form_signs_every_other_field() -> None:
    form = meizu.signed_form(CONFIGS[Vendor.MEIZU], '{"x":1}', ["a", "b"])
    assert form == {"appId": "100999", "pushIds": "a,b", "messageJson": '{"x":1}',
                    "sign": md5_hex('appId=100999messageJson={"x":1}pushIds=a,bmz-secret')}


def _mz(doc: dict[str, Any]) -> list[TokenResult]:
    return meizu.classify_response(["t1", "t2", "t3", "t4", "t5", "t6"], 200, {}, json.dumps(doc).encode(), NOW)


def test_meizu_per_target_codes() -> None:
    results = _mz({"code": "200", "message": "", "msgId": "NS1",
                   "value": {"110002": ["t1"], "110003": ["t2"], "110005": ["t3"], "520": ["t4"], "513": ["t5"]}})
    assert [(r.outcome, r.code, r.reason) for r in results] == [
        (Outcome.INVALID_TOKEN, "110002", "Unsubscribed"), (Outcome.INVALID_TOKEN, "110003", "IllegalPushId"),
        (Outcome.REJECTED, "110005", "notification_switch_off"), (Outcome.THROTTLED, "520", "Collapsed"),
        (Outcome.UNAVAILABLE, "513", "PushFailed"), (Outcome.ACCEPTED, "200", "")]
    assert results[3].retry_after_s == 60.0 and results[5].vendor_msg_id == "NS1"


def test_meizu_reads_the_newer_resp_target_shape() -> None:
    results = _mz({"code": "200", "value": {"msgId": "NS2", "respTarget": {"110010": ["t6"]}}})
    assert (results[5].outcome, results[5].reason) == (Outcome.REJECTED, "notification_switch_off")
    assert results[0].vendor_msg_id == "NS2"


@pytest.mark.parametrize(("code", "outcome", "retry_after"), [
    ("110010", Outcome.THROTTLED, None), ("110019", Outcome.THROTTLED, TO_MIDNIGHT),
    ("110051", Outcome.THROTTLED, TO_MIDNIGHT), ("110011", Outcome.THROTTLED, TO_MIDNIGHT),
    ("1003", Outcome.UNAVAILABLE, None), ("1001", Outcome.UNAVAILABLE, None), ("1006", Outcome.REJECTED, None),
    ("110000", Outcome.REJECTED, None), ("1005", Outcome.REJECTED, None)])
def test_meizu_request_codes(code: str, outcome: Outcome, retry_after: float | None) -> None:
    results = _mz({"code": code, "message": "m", "value": ""})
    assert {(r.outcome, r.code, r.retry_after_s) for r in results} == {(outcome, code, retry_after)}


# ---- Umeng ---------------------------------------------------------------------------------------

def test_umeng_listcast_body() -> None:
    body = json.loads(umeng.build_body(CONFIGS[Vendor.UMENG], note(ttl_s=3600),
                                       umeng.build_payload(note()), ["a", "b"], NOW))
    assert body == {
        "appkey": "uk", "timestamp": "1700000000", "type": "listcast", "device_tokens": "a,b",
        "payload": {"display_type": "notification",
                    "body": {"ticker": "Hi", "title": "Hi", "text": "There", "after_open": "go_app"},
                    "extra": {"order": "42", "msg_id": "m-1"}},
        "production_mode": "true", "policy": {"expire_time": "2023-11-15 07:13:20"}, "description": "m-1"}


def test_umeng_sandbox_expiry_clamp_and_payload_limit() -> None:
    sandbox = json.loads(umeng.build_body(CONFIGS[Vendor.UMENG], note(environment="sandbox", ttl_s=0),
                                          umeng.build_payload(note()), ["a"], NOW))
    assert sandbox["production_mode"] == "false" and sandbox["policy"]["expire_time"] == "2023-11-15 06:14:20"
    size = len(json.dumps(umeng.build_payload(note(data={"pad": ""})), separators=(",", ":")).encode())
    umeng.build_payload(note(data={"pad": "x" * (4096 - size)}))
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        umeng.build_payload(note(data={"pad": "x" * (4097 - size)}))


def _um(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> list[TokenResult]:
    return umeng.classify_response(TOKENS, status, headers or {}, json.dumps(doc).encode(), NOW)


def test_umeng_success_accepts_every_token() -> None:
    results = _um(200, {"ret": "SUCCESS", "data": {"msg_id": "ul1"}})
    assert outcomes(results) == [(Outcome.ACCEPTED, "SUCCESS")] * 3 and {r.vendor_msg_id for r in results} == {"ul1"}


@pytest.mark.parametrize(("status", "doc", "expected"), [
    (400, {"ret": "FAIL", "data": {"error_code": "2027", "error_msg": "sign"}}, (Outcome.REJECTED, "2027")),
    (400, {"ret": "FAIL", "data": {"error_code": "2028"}}, (Outcome.REJECTED, "2028")),
    (500, {"ret": "FAIL", "data": {"error_code": "2020"}}, (Outcome.UNAVAILABLE, "500")),
    (200, {"ret": "FAIL", "data": {"error_code": "2020"}}, (Outcome.UNAVAILABLE, "2020")),
    (502, {}, (Outcome.UNAVAILABLE, "502")), (200, {"ret": "maybe"}, (Outcome.UNAVAILABLE, "200"))])
def test_umeng_failures(status: int, doc: dict[str, Any], expected: tuple[Outcome, str]) -> None:
    assert outcomes(_um(status, doc)) == [expected] * 3


def test_umeng_rate_limit_honours_retry_after() -> None:
    results = _um(429, {}, {"retry-after": "12"})
    assert outcomes(results) == [(Outcome.THROTTLED, "429")] * 3 and results[0].retry_after_s == 12.0
