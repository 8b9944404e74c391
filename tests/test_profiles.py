"""Device profiles: one string per token, from the device directories to DispatchResult."""
from __future__ import annotations

from pushpipe.producer import device_event
from pushpipe.schemas import profiles

PIXEL = {"brand": "Google", "model": "Pixel 8", "os_version": "14", "app_version": "3.2.1"}


def test_a_profile_round_trips() -> None:
    assert profiles.encode(PIXEL) == "Google\x1fPixel 8\x1f14\x1f3.2.1"
    assert profiles.decode(profiles.encode(PIXEL)) == PIXEL


def test_a_device_event_or_an_entry_without_some_fields_has_them_empty() -> None:
    assert profiles.encode(device_event("a", "u", "tok", brand="Apple")) == "Apple\x1f\x1f\x1f"
    assert profiles.decode(profiles.encode({"brand": "HUAWEI", "app_version": "2.0"})) == {**dict.fromkeys(profiles.FIELDS, ""),
                                                                                           "brand": "HUAWEI", "app_version": "2.0"}


def test_no_profile_is_empty_and_decodes_to_every_field_empty() -> None:
    assert profiles.encode(device_event("a", "u", "tok")) == profiles.encode({"brand": None}) == ""
    assert profiles.decode("") == dict.fromkeys(profiles.FIELDS, "")


def test_values_lose_the_separator_and_are_cut_whole_characters_at_a_time() -> None:
    odd = profiles.decode(profiles.encode({"brand": "a\x1fb", "model": "é" * profiles.MAX_VALUE_BYTES}))
    assert odd["brand"] == "ab" and odd["model"] == "é" * (profiles.MAX_VALUE_BYTES // 2) and odd["os_version"] == ""


def test_more_profiles_than_are_cached_still_round_trip() -> None:
    devices = [{"brand": f"b{n}", "model": "m", "os_version": str(n % 7), "app_version": ""} for n in range(profiles.CACHED + 100)]
    for device in devices + devices[:10]:  # the first ones again, after they left the cache
        assert profiles.decode(profiles.encode(device)) == {**device}
