"""Pure Huawei Push Kit v1 pieces, no network: request builder, 4 KB limit, result codes, config."""
from __future__ import annotations

import asyncio
import json

import pytest

from contract_cases import note, send_once
from pushpipe.connectors.base import InvalidNotification, Outcome, Vendor
from pushpipe.connectors.hms import (
    HmsAdapter,
    HmsConfig,
    build_request,
    check_size,
    classify_response,
    encode_request,
    illegal_tokens,
    outcome_for_code,
    payload_size,
)
from pushpipe.connectors.registry import create_adapter

NOW = 1_700_000_000.0
TOKENS = ["t" * 40 + str(i) for i in range(4)]


def config(**overrides: object) -> HmsConfig:
    fields: dict = {"app_id": "101234567", "client_secret": "s3cret", "base_url": "https://127.0.0.1:9",
                    "auth_url": "https://127.0.0.1:9"}
    return HmsConfig(**{**fields, **overrides})


def reply(code: str, msg: str = "", request_id: str = "r-1") -> bytes:
    return json.dumps({"code": code, "msg": msg, "requestId": request_id}).encode()


# ---- request -------------------------------------------------------------------------------------

def test_notification_request_shape() -> None:
    assert build_request(note(category="IM", message_class="service"), TOKENS[:2]) == {
        "validate_only": False,
        "message": {
            "android": {"urgency": "HIGH", "ttl": "86400s", "bi_tag": "app|m-1", "category": "IM",
                        "notification": {"title": "Hi", "body": "There", "click_action": {"type": 3}}},
            "data": '{"order":"42","msg_id":"m-1"}',
            "token": TOKENS[:2],
        },
    }


def test_data_message_has_no_notification_and_normal_urgency() -> None:
    android = build_request(note(title="", body="", priority="normal"), TOKENS)["message"]["android"]
    assert "notification" not in android and android["urgency"] == "NORMAL"


def test_ttl_is_capped_at_15_days() -> None:
    assert build_request(note(ttl_s=10**8), TOKENS)["message"]["android"]["ttl"] == f"{15 * 86_400}s"


def test_data_is_one_json_string_with_string_values() -> None:
    data = build_request(note(data={"n": 5}), TOKENS)["message"]["data"]  # type: ignore[dict-item]
    assert json.loads(data) == {"n": "5", "msg_id": "m-1"}


def test_size_limit_counts_the_message_without_its_tokens() -> None:
    base = build_request(note(data={"pad": ""}), [])["message"]
    room = 4096 - payload_size(base)
    exact = build_request(note(data={"pad": "x" * room}), TOKENS * 250)["message"]  # 1000 tokens don't count
    assert payload_size(exact) == 4096
    check_size(exact)
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        encode_request(note(data={"pad": "x" * (room + 1)}), TOKENS)


def test_encoded_request_is_compact_json() -> None:
    body = encode_request(note(), TOKENS)
    assert json.loads(body) == build_request(note(), TOKENS) and b" " not in body.replace(b"Hi", b"")


# ---- result codes --------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "outcome"), [
    (200, "80000000", Outcome.ACCEPTED),
    (400, "80300007", Outcome.INVALID_TOKEN),
    (401, "80200001", Outcome.UNAVAILABLE),
    (401, "80200003", Outcome.UNAVAILABLE),
    (500, "81000001", Outcome.UNAVAILABLE),
    (400, "80100001", Outcome.REJECTED),
    (403, "80300002", Outcome.REJECTED),
    (400, "80300008", Outcome.REJECTED),
    (400, "80300010", Outcome.REJECTED),
    (400, "80999999", Outcome.REJECTED),
    (503, "", Outcome.THROTTLED),
    (429, "", Outcome.THROTTLED),
    (502, "", Outcome.UNAVAILABLE),
    (401, "", Outcome.UNAVAILABLE),
    (404, "", Outcome.REJECTED),
])
def test_outcome_for_code(status: int, code: str, outcome: Outcome) -> None:
    assert outcome_for_code(code, status) is outcome


def test_all_accepted_carry_the_request_id() -> None:
    results = classify_response(TOKENS, 200, {}, reply("80000000", "Success"), NOW)
    assert {(r.outcome, r.code, r.vendor_msg_id) for r in results} == {(Outcome.ACCEPTED, "80000000", "r-1")}


def test_partial_success_marks_only_the_listed_tokens_invalid() -> None:
    msg = json.dumps({"success": 2, "failure": 2, "illegal_tokens": [TOKENS[1], TOKENS[2]]})
    results = classify_response(TOKENS, 200, {}, reply("80100000", msg), NOW)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.INVALID_TOKEN, Outcome.INVALID_TOKEN,
                                            Outcome.ACCEPTED]
    assert results[0].vendor_msg_id == "r-1" and results[1].vendor_msg_id == ""


def test_partial_success_key_is_configurable() -> None:
    msg = json.dumps({"success": 3, "failure": 1, "illegalTokens": [TOKENS[0]]})
    results = classify_response(TOKENS, 200, {}, reply("80100000", msg), NOW, illegal_key="illegalTokens")
    assert [r.outcome for r in results] == [Outcome.INVALID_TOKEN] + [Outcome.ACCEPTED] * 3


def test_partial_success_without_a_readable_list_counts_as_accepted() -> None:
    results = classify_response(TOKENS, 200, {}, reply("80100000", "some tokens failed"), NOW)
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert illegal_tokens("not json", "illegal_tokens") is None


def test_throttling_honours_retry_after() -> None:
    results = classify_response(TOKENS, 503, {"retry-after": "9"}, b'{"msg": "flow control"}', NOW)
    assert {(r.outcome, r.code, r.retry_after_s) for r in results} == {(Outcome.THROTTLED, "503", 9.0)}


def test_non_json_gateway_error_is_unavailable() -> None:
    results = classify_response(TOKENS[:1], 502, {}, b"<html>502</html>", NOW)
    assert (results[0].outcome, results[0].code) == (Outcome.UNAVAILABLE, "502")


# ---- adapter without a network -------------------------------------------------------------------

def test_oversize_is_rejected_without_any_request() -> None:
    results = asyncio.run(send_once(HmsAdapter(config()), note(data={"blob": "x" * 5000}), TOKENS))
    assert {(r.outcome, r.code, r.reason) for r in results} == {(Outcome.REJECTED, "", "PayloadTooLarge")}


def test_unreachable_token_endpoint_makes_every_token_unavailable() -> None:
    results = asyncio.run(send_once(HmsAdapter(config(timeout_s=2)), note(), TOKENS))
    assert [(r.token, r.outcome, r.code) for r in results] == [(t, Outcome.UNAVAILABLE, "transport") for t in TOKENS]


# ---- config and registry -------------------------------------------------------------------------

def test_config_masks_the_secret_and_builds_urls() -> None:
    c = config(base_url="https://push.example/", auth_url="https://auth.example")
    assert "s3cret" not in repr(c) and c.secret() == "s3cret"
    assert c.send_url() == "https://push.example/v1/101234567/messages:send"
    assert c.token_url() == "https://auth.example/oauth2/v3/token"
    assert c.oauth_client_id() == "101234567" and config(client_id="other").oauth_client_id() == "other"


def test_production_defaults() -> None:
    c = HmsConfig(app_id="1", client_secret="s")
    assert c.send_url() == "https://push-api.cloud.huawei.com/v1/1/messages:send"
    assert c.token_url() == "https://oauth-login.cloud.huawei.com/oauth2/v3/token"
    assert (c.max_batch, c.illegal_tokens_key) == (1000, "illegal_tokens")


@pytest.mark.parametrize("overrides", [{"app_id": ""}, {"client_secret": ""}, {"max_batch": 1001}, {"max_batch": 0},
                                       {"timeout_s": 0}, {"refresh_margin_s": -1}])
def test_config_is_validated(overrides: dict) -> None:
    with pytest.raises(ValueError):
        config(**overrides)


def test_registry_builds_the_hms_adapter() -> None:
    adapter = create_adapter("hms", config())
    assert isinstance(adapter, HmsAdapter) and adapter.vendor is Vendor.HMS and adapter.max_batch == 1000
