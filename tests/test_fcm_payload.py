"""Pure FCM HTTP v1 pieces, no network: message builder, size limit, assertion, classification, config."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jwt
import pytest

from contract_cases import note, send_once
from pushpipe.connectors.base import InvalidNotification, Outcome, Vendor
from pushpipe.connectors.fcm import (
    SCOPE,
    FcmAdapter,
    FcmConfig,
    build_message,
    check_size,
    classify_response,
    encode_request,
    payload_size,
    service_account_assertion,
)
from pushpipe.connectors.registry import create_adapter
from pushpipe.simulators.fcm import key_from_service_account, new_service_account

NOW = 1_700_000_000.0
TOKEN = "abc:APA91b" + "x" * 140
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


@pytest.fixture(scope="module")
def account() -> dict[str, str]:
    return new_service_account("demo-project")


def config(account: dict[str, str], **overrides: object) -> FcmConfig:
    fields: dict = {"service_account": json.dumps(account), "base_url": "https://127.0.0.1:9",
                    "token_uri": "https://127.0.0.1:9/token"}
    return FcmConfig(**{**fields, **overrides})


# ---- message -------------------------------------------------------------------------------------

def test_alert_message_shape() -> None:
    assert build_message(note(collapse_id="c1", category="ORDER"), TOKEN, NOW) == {
        "token": TOKEN,
        "notification": {"title": "Hi", "body": "There"},
        "data": {"order": "42", "msg_id": "m-1"},
        "android": {"priority": "high", "ttl": "86400s", "collapse_key": "c1"},
        "apns": {"headers": {"apns-priority": "10", "apns-push-type": "alert",
                             "apns-expiration": str(int(NOW) + 86_400), "apns-collapse-id": "c1"},
                 "payload": {"aps": {"mutable-content": 1, "category": "ORDER"}}},
    }


def test_data_only_message_is_a_background_push_without_notification() -> None:
    message = build_message(note(title="", body=""), TOKEN, NOW)
    assert "notification" not in message
    assert message["apns"]["headers"]["apns-push-type"] == "background"
    assert message["apns"]["headers"]["apns-priority"] == "5"
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}


@pytest.mark.parametrize(("priority", "android", "apns"), [("high", "high", "10"), ("normal", "normal", "5"),
                                                            ("low", "normal", "1")])
def test_priority_mapping(priority: str, android: str, apns: str) -> None:
    message = build_message(note(priority=priority), TOKEN, NOW)
    assert (message["android"]["priority"], message["apns"]["headers"]["apns-priority"]) == (android, apns)


def test_ttl_is_capped_at_four_weeks_and_zero_means_now_or_never() -> None:
    assert build_message(note(ttl_s=10**8), TOKEN, NOW)["android"]["ttl"] == f"{28 * 86_400}s"
    message = build_message(note(ttl_s=0), TOKEN, NOW)
    assert message["android"]["ttl"] == "0s" and message["apns"]["headers"]["apns-expiration"] == "0"


def test_data_values_become_strings_and_msg_id_is_added() -> None:
    data = build_message(note(data={"n": 5}), TOKEN, NOW)["data"]  # type: ignore[dict-item]
    assert data == {"n": "5", "msg_id": "m-1"}


@pytest.mark.parametrize("key", ["from", "notification", "message_type", "google.sent_time", "gcm.x", "GCM_y"])
def test_reserved_data_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidNotification) as err:
        build_message(note(data={key: "v"}), TOKEN, NOW)
    assert err.value.reason == "InvalidDataKey"


def test_apns_collapse_id_over_64_bytes_is_refused() -> None:
    with pytest.raises(InvalidNotification, match="BadCollapseId"):
        build_message(note(collapse_id="c" * 65), TOKEN, NOW)


def test_payload_limit_counts_notification_and_data_only() -> None:
    base = build_message(note(data={"pad": ""}), TOKEN, NOW)
    room = 4096 - payload_size(base)
    exact = build_message(note(data={"pad": "x" * room}), TOKEN * 10, NOW)  # the token does not count
    assert payload_size(exact) == 4096
    check_size(exact)
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        check_size(build_message(note(data={"pad": "x" * (room + 1)}), TOKEN, NOW))


def test_payload_size_counts_utf8_bytes() -> None:
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        check_size(build_message(note(body="é" * 2100), TOKEN, NOW))


def test_request_body_wraps_the_message() -> None:
    message = build_message(note(), TOKEN, NOW)
    assert json.loads(encode_request(message)) == {"message": message}


# ---- auth ----------------------------------------------------------------------------------------

def test_assertion_is_rs256_with_the_documented_claims(account: dict[str, str]) -> None:
    parsed = config(account).account()
    assertion = service_account_assertion(parsed, "https://oauth2.example/token", SCOPE, NOW)
    assert jwt.get_unverified_header(assertion) == {"alg": "RS256", "kid": account["private_key_id"], "typ": "JWT"}
    public = key_from_service_account(account).public_key
    claims = jwt.decode(assertion, public, algorithms=["RS256"], audience="https://oauth2.example/token",
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": account["client_email"], "scope": SCOPE, "aud": "https://oauth2.example/token",
                      "iat": int(NOW), "exp": int(NOW) + 3600}


# ---- responses -----------------------------------------------------------------------------------

def error_body(status: int, rpc: str, code: str = "", field: str = "") -> bytes:
    details: list[dict] = [{"@type": FCM_ERROR, "errorCode": code}] if code else []
    if field:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": "bad"}]})
    return json.dumps({"error": {"code": status, "message": "m", "status": rpc, "details": details}}).encode()


@pytest.mark.parametrize(("status", "rpc", "code", "field", "outcome", "reason"), [
    (404, "NOT_FOUND", "UNREGISTERED", "", Outcome.INVALID_TOKEN, "UNREGISTERED"),
    (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.token", Outcome.INVALID_TOKEN, "INVALID_ARGUMENT"),
    (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "message.android.ttl", Outcome.REJECTED, "INVALID_ARGUMENT"),
    (400, "INVALID_ARGUMENT", "", "message.token", Outcome.INVALID_TOKEN, "INVALID_ARGUMENT"),
    (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "", Outcome.REJECTED, "SENDER_ID_MISMATCH"),
    (401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "", Outcome.REJECTED, "THIRD_PARTY_AUTH_ERROR"),
    (401, "UNAUTHENTICATED", "", "", Outcome.UNAVAILABLE, "UNAUTHENTICATED"),
    (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "", Outcome.THROTTLED, "QUOTA_EXCEEDED"),
    (503, "UNAVAILABLE", "UNAVAILABLE", "", Outcome.UNAVAILABLE, "UNAVAILABLE"),
    (500, "INTERNAL", "INTERNAL", "", Outcome.UNAVAILABLE, "INTERNAL"),
    (404, "NOT_FOUND", "", "", Outcome.REJECTED, "NOT_FOUND"),  # wrong project or URL, not a dead token
    (403, "PERMISSION_DENIED", "", "", Outcome.REJECTED, "PERMISSION_DENIED"),
])
def test_classify_errors(status: int, rpc: str, code: str, field: str, outcome: Outcome, reason: str) -> None:
    result = classify_response(TOKEN, status, {}, error_body(status, rpc, code, field), NOW)
    assert (result.outcome, result.code, result.reason) == (outcome, str(status), reason)


def test_retry_after_is_honoured_on_429_and_503() -> None:
    for status, rpc, code in ((429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), (503, "UNAVAILABLE", "UNAVAILABLE")):
        result = classify_response(TOKEN, status, {"retry-after": "60"}, error_body(status, rpc, code), NOW)
        assert result.retry_after_s == 60.0


def test_classify_accepted_carries_the_message_name() -> None:
    body = json.dumps({"name": "projects/p/messages/0:1"}).encode()
    result = classify_response(TOKEN, 200, {}, body, NOW)
    assert (result.outcome, result.code, result.vendor_msg_id) == (Outcome.ACCEPTED, "200", "projects/p/messages/0:1")


def test_classify_non_json_gateway_error() -> None:
    result = classify_response(TOKEN, 502, {}, b"<html>bad gateway</html>", NOW)
    assert result.outcome is Outcome.UNAVAILABLE and result.code == "502"


# ---- adapter without a network -------------------------------------------------------------------

def test_oversize_is_rejected_without_any_request(account: dict[str, str]) -> None:
    """Send URL and token endpoint are a closed port: any request (even for a token) would be unavailable."""
    adapter = FcmAdapter(config(account))
    results = asyncio.run(send_once(adapter, note(data={"blob": "x" * 5000}), [TOKEN, TOKEN]))
    assert [(r.outcome, r.code, r.reason) for r in results] == [(Outcome.REJECTED, "", "PayloadTooLarge")] * 2
    assert adapter.access_tokens is None


def test_unreachable_token_endpoint_makes_every_token_unavailable(account: dict[str, str]) -> None:
    adapter = FcmAdapter(config(account, timeout_s=2))
    results = asyncio.run(send_once(adapter, note(), [TOKEN, TOKEN]))
    assert {(r.outcome, r.code) for r in results} == {(Outcome.UNAVAILABLE, "transport")}


# ---- config and registry -------------------------------------------------------------------------

def test_config_masks_the_key_and_reads_text_or_path(account: dict[str, str], tmp_path: Path) -> None:
    inline = config(account)
    assert "PRIVATE KEY" not in repr(inline) and "**********" in repr(inline)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    from_path = config(account, service_account=str(path))
    assert from_path.account().client_email == inline.account().client_email == account["client_email"]


def test_config_defaults_come_from_the_key(account: dict[str, str]) -> None:
    c = FcmConfig(service_account=json.dumps(account))
    assert c.project() == "demo-project" and c.token_url() == "https://oauth2.googleapis.com/token"
    assert c.send_url() == "https://fcm.googleapis.com/v1/projects/demo-project/messages:send"
    assert config(account, project_id="other").send_url().endswith("/v1/projects/other/messages:send")


@pytest.mark.parametrize("overrides", [{"timeout_s": 0}, {"max_streams": 0}, {"max_batch": 0},
                                       {"refresh_margin_s": 3600}, {"service_account": '{"type": "user"}'}])
def test_config_is_validated(account: dict[str, str], overrides: dict) -> None:
    with pytest.raises(ValueError):
        config(account, **overrides)


def test_registry_builds_the_fcm_adapter(account: dict[str, str]) -> None:
    adapter = create_adapter("fcm", config(account))
    assert isinstance(adapter, FcmAdapter) and adapter.vendor is Vendor.FCM and adapter.max_batch == 1000
