"""Pure Honor Push pieces, no network: request dialect, timestamp header, reply classification, config."""
from __future__ import annotations

import json

import pytest

from contract_cases import note
from pushpipe.connectors.base import InvalidNotification, Outcome, Vendor
from pushpipe.connectors.honor import (
    KEYCLOAK_TOKEN_PATH,
    HonorAdapter,
    HonorConfig,
    build_request,
    classify_response,
    encode_request,
    timestamp_header,
)
from pushpipe.connectors.registry import create_adapter

NOW = 1_700_000_000.123
TOKENS = ["t" * 40 + str(i) for i in range(4)]


def config(**overrides: object) -> HonorConfig:
    fields: dict = {"app_id": "104123456", "client_id": "cid", "client_secret": "s3cret"}
    return HonorConfig(**{**fields, **overrides})


def honor_reply(code: int = 200, fail: list[str] | None = None, expire: list[str] | None = None) -> bytes:
    data = {"sendResult": True, "requestId": "r-1", "failTokens": fail or [], "expireTokens": expire or []}
    return json.dumps({"code": code, "message": "success", "data": data}).encode()


# ---- request -------------------------------------------------------------------------------------

def test_notification_request_shape() -> None:
    assert build_request(note(), TOKENS[:2]) == {
        "data": '{"order":"42","msg_id":"m-1"}',
        "notification": {"title": "Hi", "body": "There"},
        "android": {"ttl": "86400s", "biTag": "app|m-1",
                    "notification": {"title": "Hi", "body": "There", "clickAction": {"type": 3},
                                     "importance": "NORMAL"}},
        "token": TOKENS[:2],
    }


def test_data_message_and_low_importance() -> None:
    assert "notification" not in build_request(note(title="", body=""), TOKENS)
    android = build_request(note(priority="low"), TOKENS)["android"]
    assert android["notification"]["importance"] == "LOW"


def test_size_limit_is_configurable_and_ignores_tokens() -> None:
    encode_request(note(), TOKENS * 250)
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        encode_request(note(data={"blob": "x" * 5000}), TOKENS)
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        encode_request(note(), TOKENS, max_payload_bytes=100)


def test_timestamp_header_is_epoch_milliseconds() -> None:
    assert timestamp_header(NOW) == "1700000000123"


def test_adapter_headers_carry_bearer_and_timestamp() -> None:
    headers = HonorAdapter(config(), clock=lambda: NOW).headers("tok")
    assert headers == {"authorization": "Bearer tok", "content-type": "application/json", "timestamp": "1700000000123"}


# ---- replies -------------------------------------------------------------------------------------

def test_processed_request_splits_expired_and_failed_tokens() -> None:
    results = classify_response(TOKENS, 200, {}, honor_reply(fail=[TOKENS[2]], expire=[TOKENS[1]]), NOW, config())
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.ACCEPTED, ""), (Outcome.INVALID_TOKEN, "expireToken"), (Outcome.INVALID_TOKEN, "failToken"),
        (Outcome.ACCEPTED, "")]
    assert results[0].vendor_msg_id == "r-1" and {r.code for r in results} == {"200"}


def test_fail_tokens_outcome_is_configurable() -> None:
    c = config(fail_tokens_outcome="rejected")
    results = classify_response(TOKENS[:2], 200, {}, honor_reply(fail=[TOKENS[0]]), NOW, c)
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.ACCEPTED]


def test_huawei_success_code_is_accepted_too() -> None:
    results = classify_response(TOKENS, 200, {}, honor_reply(code=80000000), NOW, config())
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}


@pytest.mark.parametrize(("status", "code", "outcome"), [
    (401, 80200003, Outcome.UNAVAILABLE), (401, 80200001, Outcome.UNAVAILABLE), (500, 81000001, Outcome.UNAVAILABLE),
    (400, 80300007, Outcome.INVALID_TOKEN), (400, 80300008, Outcome.REJECTED), (400, 80300010, Outcome.REJECTED),
    (400, 80100001, Outcome.REJECTED),
])
def test_error_codes_follow_the_huawei_table(status: int, code: int, outcome: Outcome) -> None:
    body = json.dumps({"code": code, "message": "x", "data": None}).encode()
    results = classify_response(TOKENS[:1], status, {}, body, NOW, config())
    assert (results[0].outcome, results[0].code, results[0].reason) == (outcome, str(code), "x")


def test_throttled_with_retry_after() -> None:
    results = classify_response(TOKENS[:1], 503, {"retry-after": "4"}, b'{"msg": "flow control"}', NOW, config())
    assert (results[0].outcome, results[0].retry_after_s) == (Outcome.THROTTLED, 4.0)


def test_huawei_style_partial_success_is_understood() -> None:
    msg = json.dumps({"illegal_tokens": [TOKENS[0]]})
    body = json.dumps({"code": "80100000", "msg": msg, "requestId": "r"}).encode()
    results = classify_response(TOKENS[:2], 200, {}, body, NOW, config())
    assert [r.outcome for r in results] == [Outcome.INVALID_TOKEN, Outcome.ACCEPTED]


# ---- config and registry -------------------------------------------------------------------------

def test_config_defaults_mask_and_urls() -> None:
    c = config()
    assert "s3cret" not in repr(c)
    assert c.token_url() == "https://iam.developer.hihonor.com/auth/token"
    assert c.send_url() == "https://push-api.cloud.hihonor.com/api/v1/104123456/sendMessage"
    assert config(token_path=KEYCLOAK_TOKEN_PATH).token_url().endswith("/openid-connect/token")
    assert (c.ok_codes, c.fail_tokens_outcome, c.max_batch) == (("200", "80000000"), Outcome.INVALID_TOKEN, 1000)


def test_json_lists_become_tuples() -> None:
    assert config(ok_codes=[0, 200]).ok_codes == ("0", "200")


@pytest.mark.parametrize("overrides", [{"client_id": ""}, {"client_secret": ""}, {"max_batch": 1001},
                                       {"max_tokens": 0}, {"fail_tokens_outcome": "lost"}])
def test_config_is_validated(overrides: dict) -> None:
    with pytest.raises(ValueError):
        config(**overrides)


def test_max_batch_follows_a_raised_max_tokens() -> None:
    assert config(max_tokens=2000, max_batch=2000).max_batch == 2000


def test_registry_builds_the_honor_adapter() -> None:
    adapter = create_adapter(Vendor.HONOR, config())
    assert isinstance(adapter, HonorAdapter) and adapter.vendor is Vendor.HONOR
    with pytest.raises(TypeError):
        create_adapter(Vendor.HMS, config())
