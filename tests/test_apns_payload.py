"""Pure APNs pieces, no network: payload and headers, response classification, provider token, config."""
from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import NamedTuple

import jwt
import pytest

from contract_cases import send_once
from pushpipe.connectors.apns import (
    ApnsAdapter,
    ApnsConfig,
    ProviderToken,
    apns_id,
    build_headers,
    build_payload,
    classify_response,
    device_path,
    encode_payload,
    parse_retry_after,
)
from pushpipe.connectors.base import InvalidNotification, Notification, Outcome, Vendor
from pushpipe.connectors.dev_credentials import generate_p8, new_key_id
from pushpipe.connectors.registry import SPECS, create_adapter

NOW = 1_700_000_000.0
TOKEN = "ab" * 32



class ApnsRequest(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes


def build_apns_request(n: Notification, token: str, now: float) -> ApnsRequest:
    """What the adapter sends for one token: path, headers without authorization, body."""
    return ApnsRequest(device_path(token), build_headers(n, token, now), encode_payload(n))

def note(**overrides: object) -> Notification:
    fields: dict = {"msg_id": "m-1", "app_id": "app", "title": "Hi", "body": "There",
                    "data": {"order": "42"}, "topic": "com.example.app"}
    return Notification(**{**fields, **overrides})


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "AuthKey.p8"
    return path, generate_p8(path)


def config(key_path: Path, **overrides: object) -> ApnsConfig:
    fields: dict = {"team_id": "TEAM123456", "key_id": "KEY1234567", "p8_key": str(key_path),
                    "topic": "com.example.app", "base_url": "https://127.0.0.1:9"}
    return ApnsConfig(**{**fields, **overrides})


# ---- payload and headers ------------------------------------------------------------------------

def test_alert_payload_has_aps_alert_sound_mutable_content_and_top_level_data() -> None:
    assert build_payload(note(category="ORDER")) == {
        "order": "42", "msg_id": "m-1",
        "aps": {"alert": {"title": "Hi", "body": "There"}, "sound": "default", "mutable-content": 1,
                "category": "ORDER"},
    }


def test_data_cannot_override_aps() -> None:
    assert build_payload(note(data={"aps": "evil"}))["aps"]["alert"]["title"] == "Hi"


def test_request_path_headers_and_body() -> None:
    path, headers, body = build_apns_request(note(collapse_id="c1"), TOKEN, now=NOW)
    assert path == f"/3/device/{TOKEN}"
    assert headers == {"apns-push-type": "alert", "apns-topic": "com.example.app", "apns-priority": "10",
                       "apns-expiration": str(int(NOW) + 86_400), "apns-id": apns_id("m-1", TOKEN),
                       "apns-collapse-id": "c1"}
    assert json.loads(body) == build_payload(note())
    assert "authorization" not in headers


@pytest.mark.parametrize(("priority", "header"), [("high", "10"), ("normal", "5"), ("low", "1")])
def test_priority_mapping(priority: str, header: str) -> None:
    assert build_apns_request(note(priority=priority), TOKEN, now=NOW).headers["apns-priority"] == header


def test_background_push_when_there_is_nothing_to_show() -> None:
    n = note(title="", body="")
    _, headers, body = build_apns_request(n, TOKEN, now=NOW)
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("background", "5")
    assert json.loads(body)["aps"] == {"content-available": 1}


def test_ttl_zero_means_do_not_store_and_no_collapse_header_by_default() -> None:
    headers = build_apns_request(note(ttl_s=0), TOKEN, now=NOW).headers
    assert headers["apns-expiration"] == "0" and "apns-collapse-id" not in headers


def test_apns_id_is_a_stable_uuid_per_message_and_token() -> None:
    assert apns_id("m-1", TOKEN) == apns_id("m-1", TOKEN) != apns_id("m-1", "cd" * 32)
    assert str(uuid.UUID(apns_id("m-1", TOKEN))) == apns_id("m-1", TOKEN)


def test_token_is_escaped_in_the_path() -> None:
    assert build_apns_request(note(), "a/b?c", now=NOW).path == "/3/device/a%2Fb%3Fc"


def test_payload_at_the_limit_is_fine_and_one_byte_more_is_too_large() -> None:
    size = len(build_apns_request(note(data={"pad": ""}), TOKEN, now=NOW).body)
    exact = note(data={"pad": "x" * (4096 - size)})
    assert len(build_apns_request(exact, TOKEN, now=NOW).body) == 4096
    with pytest.raises(InvalidNotification) as err:
        build_apns_request(note(data={"pad": "x" * (4097 - size)}), TOKEN, now=NOW)
    assert err.value.reason == "PayloadTooLarge"


def test_payload_size_counts_utf8_bytes() -> None:
    with pytest.raises(InvalidNotification, match="PayloadTooLarge"):
        build_apns_request(note(body="é" * 2100), TOKEN, now=NOW)  # 2100 chars, 4200 bytes


@pytest.mark.parametrize(("overrides", "reason"), [({"collapse_id": "c" * 65}, "BadCollapseId"),
                                                    ({"collapse_id": "a\r\nb"}, "BadCollapseId"),
                                                    ({"topic": ""}, "MissingTopic")])
def test_invalid_headers_are_refused_before_sending(overrides: dict, reason: str) -> None:
    with pytest.raises(InvalidNotification) as err:
        build_apns_request(note(**overrides), TOKEN, now=NOW)
    assert err.value.reason == reason


def test_oversize_is_rejected_by_the_adapter_without_a_network_call(key: tuple[Path, str]) -> None:
    adapter = ApnsAdapter(config(key[0]))  # base_url points at a closed port: any request would fail
    results = asyncio.run(send_once(adapter, note(data={"blob": "x" * 5000}), [TOKEN, TOKEN]))
    assert [(r.outcome, r.code, r.reason) for r in results] == [(Outcome.REJECTED, "", "PayloadTooLarge")] * 2


def test_notification_validates_itself() -> None:
    with pytest.raises(ValueError, match="priority"):
        note(priority="urgent")
    with pytest.raises(ValueError, match="environment"):
        note(environment="staging")


# ---- responses ----------------------------------------------------------------------------------

def _body(reason: str) -> bytes:
    return json.dumps({"reason": reason}).encode()


@pytest.mark.parametrize(("status", "reason", "outcome"), [
    (410, "Unregistered", Outcome.INVALID_TOKEN),
    (410, "ExpiredToken", Outcome.INVALID_TOKEN),
    (400, "BadDeviceToken", Outcome.INVALID_TOKEN),
    (400, "DeviceTokenNotForTopic", Outcome.INVALID_TOKEN),
    (429, "TooManyRequests", Outcome.THROTTLED),
    (500, "InternalServerError", Outcome.UNAVAILABLE),
    (503, "ServiceUnavailable", Outcome.UNAVAILABLE),
    (503, "Shutdown", Outcome.UNAVAILABLE),
    (403, "ExpiredProviderToken", Outcome.UNAVAILABLE),
    (403, "InvalidProviderToken", Outcome.REJECTED),
    (413, "PayloadTooLarge", Outcome.REJECTED),
    (400, "BadTopic", Outcome.REJECTED),
    (405, "MethodNotAllowed", Outcome.REJECTED),
])
def test_classify_error_responses(status: int, reason: str, outcome: Outcome) -> None:
    result = classify_response(TOKEN, status, {"apns-id": "id-1"}, _body(reason), NOW)
    assert (result.outcome, result.code, result.reason) == (outcome, str(status), reason)


def test_classify_accepted_carries_apns_id() -> None:
    result = classify_response(TOKEN, 200, {"apns-id": "id-1"}, b"", NOW)
    assert (result.outcome, result.code, result.vendor_msg_id) == (Outcome.ACCEPTED, "200", "id-1")


def test_classify_throttled_with_retry_after() -> None:
    result = classify_response(TOKEN, 429, {"retry-after": "7"}, _body("TooManyRequests"), NOW)
    assert (result.outcome, result.retry_after_s) == (Outcome.THROTTLED, 7.0)


def test_classify_non_json_error_body() -> None:
    assert classify_response(TOKEN, 502, {}, b"<html>bad gateway</html>", NOW).outcome is Outcome.UNAVAILABLE


@pytest.mark.parametrize(("value", "seconds"), [(None, None), ("", None), ("3", 3.0), ("1.5", 1.5),
                                                ("-4", 0.0), ("soon", None),
                                                ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0)])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds  # NOW is 22:13:20 GMT that day


# ---- provider token -----------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_provider_token_is_es256_with_kid_iss_iat(key: tuple[Path, str]) -> None:
    tok = ProviderToken("TEAM123456", "KEY1234567", key[0].read_text(), clock=FakeClock(NOW), refresh_s=3000).get()
    assert jwt.get_unverified_header(tok) == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    claims = jwt.decode(tok, key[1], algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"iss": "TEAM123456", "iat": int(NOW)}


def test_provider_token_is_cached_then_refreshed_at_the_refresh_age(key: tuple[Path, str]) -> None:
    clock = FakeClock(NOW)
    provider = ProviderToken("TEAM123456", "KEY1234567", key[0].read_text(), clock=clock, refresh_s=3000)
    first = provider.get()
    clock.now = NOW + 2999
    assert provider.get() == first
    clock.now = NOW + 3000
    assert provider.get() != first and provider.issued_at == NOW + 3000


def test_provider_token_invalidate_refreshes_once(key: tuple[Path, str]) -> None:
    provider = ProviderToken("TEAM123456", "KEY1234567", key[0].read_text(), clock=FakeClock(NOW), refresh_s=3000)
    stale = provider.get()
    assert provider.invalidate(stale)
    fresh = provider.get()
    assert fresh != stale
    assert not provider.invalidate(stale), "a late 403 for the old token must not drop the new one"
    assert provider.get() == fresh


# ---- config and registry ------------------------------------------------------------------------

def test_config_masks_the_key_and_reads_pem_or_path(key: tuple[Path, str]) -> None:
    pem = key[0].read_text()
    inline = config(key[0], p8_key=pem)
    assert "PRIVATE KEY" not in repr(inline) and "**********" in repr(inline)
    assert inline.private_pem() == config(key[0]).private_pem() == pem


@pytest.mark.parametrize("overrides", [{"key_id": "short"}, {"team_id": "TEAM-12345"}, {"topic": ""},
                                       {"timeout_s": 0}, {"token_refresh_s": 600}, {"token_refresh_s": 3600}])
def test_config_is_validated(key: tuple[Path, str], overrides: dict) -> None:
    with pytest.raises(ValueError):
        config(key[0], **overrides)


def test_config_from_credentials_file(key: tuple[Path, str], tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"team_id": "TEAM123456", "key_id": new_key_id(), "key_path": str(key[0]),
                                 "topic": "com.example.app"}))
    loaded = ApnsConfig.from_credentials(creds, base_url="https://sim", verify=False)
    assert (loaded.base_url, loaded.verify, loaded.private_pem()) == ("https://sim", False, key[0].read_text())


def test_registry_builds_apns_and_refuses_the_rest(key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = create_adapter("apns", config(key[0]))
    assert isinstance(adapter, ApnsAdapter) and adapter.vendor is Vendor.APNS and adapter.max_batch == 1000
    assert Vendor.APNS in SPECS
    with pytest.raises(TypeError, match="FcmConfig"):
        create_adapter(Vendor.FCM, config(key[0]))  # another vendor's config
    monkeypatch.delitem(SPECS, Vendor.FCM)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no adapter"):
        create_adapter(Vendor.FCM, config(key[0]))
    with pytest.raises(ValueError):
        create_adapter("carrier-pigeon", config(key[0]))
    with pytest.raises(TypeError):
        create_adapter(Vendor.APNS, object())  # type: ignore[arg-type]
