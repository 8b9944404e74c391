"""The one codec: single-object encoding, evolution, clear errors for bad input."""
import io
import json

import fastavro
import pytest
from fastavro.schema import parse_schema

from pushpipe.jobs.fanout import records
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import codec, profiles, results


def test_round_trip_every_record_type() -> None:
    request = push_request("app", ["u1", "u2"], "hi", "there", campaign="c1")
    assert codec.decode("PushRequest", codec.encode("PushRequest", request)) == request
    event = device_event("app", "u1", "t" * 64)
    assert codec.decode("DeviceEvent", codec.encode("DeviceEvent", event)) == event


@pytest.mark.parametrize("count", [0, 1, 63, 64, 300])  # the array's count is a varint: 64 and up take two bytes
def test_an_array_record_joined_from_item_bodies_is_the_same_bytes(count: int) -> None:
    request = push_request("app", ["u"], "t", "b")
    batches = [records.batch(request, "apns", [(f"t{i}", "u", "", "")], i, f"test:{i}") for i in range(count)]
    joined = codec.encode_array("DispatchBundle", [codec.body("DispatchBatch", b) for b in batches])
    assert joined == codec.encode("DispatchBundle", {"batches": batches})
    assert codec.record_name(joined) == "DispatchBundle" and codec.decode("DispatchBundle", joined)["batches"] == batches


def test_header_is_avro_single_object_encoding() -> None:
    payload = codec.encode("PushRequest", push_request("app", ["u1"], "t", "b"))
    assert payload[:2] == b"\xc3\x01"
    assert payload[2:10] == codec.fingerprint(codec.schema("PushRequest"))


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # Avro spec: CRC-64-AVRO of "null" is 0x63dd24e7cc258f8a, written little-endian.
    assert codec.fingerprint("null") == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def written_by(history: str, record: dict) -> bytes:
    """`record` as a writer of the older schema kept in schemas/history/`history` wrote it."""
    old = parse_schema(json.loads((codec.HISTORY_DIR / history).read_text()))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old, record)
    return codec.MAGIC + codec.fingerprint(old) + body.getvalue()


def test_old_writer_is_read_by_the_new_reader() -> None:
    record = {
        "msg_id": "m-old", "app_id": "app", "environment": "production", "target": "pin", "pins": ["u1"],
        "tokens": [], "notification": {"title": "t", "body": "b", "data": {}, "sound": None, "badge": None,
                                       "collapse_id": None, "template_id": None, "template_vars": {}},
        "priority": "high", "category": "transactional", "ttl_s": 60, "deliver_at": None, "created_at": 5,
    }
    decoded = codec.decode("PushRequest", written_by("PushRequest.v1.avsc", record))
    assert decoded["msg_id"] == "m-old"
    assert decoded["campaign"] is None and decoded["segment"] == {}


def test_results_written_one_by_one_are_read_with_no_groups() -> None:
    outcome = {"token": "t1", "outcome": "accepted", "code": "", "reason": "", "vendor_msg_id": "v1", "pin": "u1",
               "exit": "apns", "final": True}
    record = {"batch_id": "b", "msg_id": "m", "app_id": "a", "vendor": "apns", "priority": "normal",
              "category": "transactional", "campaign": None, "attempt": 0, "outcomes": [outcome],
              "requested_at": 1, "sent_at": 2, "completed_at": 3}
    decoded = codec.decode("DispatchResult", written_by("DispatchResult.v2.avsc", record))
    assert decoded["accepted"] == [] and results.token_outcomes(decoded) == [{**outcome, "count": 0, "profile": ""}]


def test_profiles_round_trip_through_a_result() -> None:
    iphone, huawei = profiles.encode({"brand": "Apple", "model": "iPhone15,3"}), profiles.encode({"brand": "HUAWEI", "os_version": "4.2"})
    outcomes = results.Outcomes()
    outcomes.add("t1", "u1", "accepted", exit_="apns", profile=iphone)
    outcomes.add("t2", "u2", "accepted", exit_="apns")
    outcomes.add("t3", "u3", "unavailable", final=False, profile=huawei)
    result = codec.new_record("DispatchResult", batch_id="b", msg_id="m", app_id="a", environment="test", vendor="apns",
                              outcomes=outcomes.single, accepted=outcomes.accepted, requested_at=1, sent_at=2, completed_at=3)
    decoded = codec.decode("DispatchResult", codec.encode("DispatchResult", result))
    assert {o["token"]: o["profile"] for o in results.token_outcomes(decoded)} == {"t1": iphone, "t2": "", "t3": huawei}
    assert profiles.decode(decoded["accepted"][0]["profiles"][0])["model"] == "iPhone15,3" and decoded["environment"] == "test"


def test_batches_bundles_and_results_written_before_profiles_are_read_without_them() -> None:
    before = {k: v for k, v in records.batch(push_request("a", ["u"], "t", "b"), "apns", [("t1", "u", "", "")], 1, "pin:u:0").items()
              if k != "profiles"}
    assert codec.decode("DispatchBatch", written_by("DispatchBatch.v5.avsc", before))["profiles"] == []
    [bundled] = codec.decode("DispatchBundle", written_by("DispatchBundle.v1.avsc", {"batches": [before]}))["batches"]
    assert bundled == {**before, "profiles": []}
    group = {"tokens": ["t1"], "pins": ["u"], "code": "", "reason": "", "vendor_msg_id": "v1", "exit": "apns"}
    result = {"batch_id": "b", "msg_id": "m", "app_id": "a", "vendor": "apns", "priority": "normal", "category": "transactional",
              "campaign": None, "attempt": 0, "outcomes": [], "accepted": [group], "requested_at": 1, "due_at": 1, "sent_at": 2,
              "completed_at": 3}
    decoded = codec.decode("DispatchResult", written_by("DispatchResult.v5.avsc", result))
    assert decoded["environment"] == "production" and [o["profile"] for o in results.token_outcomes(decoded)] == [""]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not avro at all", "malformed_avro"),
        (b"", "malformed_avro"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown_schema"),
    ],
)
def test_bad_input_has_a_reason(payload: bytes, error: str) -> None:
    with pytest.raises(codec.BadRecord) as bad:
        codec.decode("PushRequest", payload)
    assert bad.value.error == error and bad.value.reason


def test_truncated_body_is_malformed() -> None:
    payload = codec.encode("PushRequest", push_request("app", ["u1"], "t", "b"))
    with pytest.raises(codec.BadRecord) as bad:
        codec.decode("PushRequest", payload[:20])
    assert bad.value.error == "malformed_avro"


def test_record_of_another_type_is_refused() -> None:
    payload = codec.encode("DeviceEvent", device_event("app", "u1", "t"))
    with pytest.raises(codec.BadRecord) as bad:
        codec.decode("PushRequest", payload)
    assert bad.value.error == "wrong_schema"
