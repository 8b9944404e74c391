"""A registered app's rules in fan-out, without services: its environment, its vendors (vendor_not_allowed) and, with
app_registry_required, the dead letter of an app not in the registry; an app store in memory stands in for the apps
topic. tests/test_apps_e2e.py runs them through the real stack."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flink_fakes import Harness
from pushpipe.config import load
from pushpipe.jobs.deadletters import DLQ
from pushpipe.jobs.fanout import apprules, shards
from pushpipe.jobs.fanout.devices import apply_event
from pushpipe.jobs.fanout.expand import TEST_TO_PRODUCTION, expand_for_pin, new_pin_state
from pushpipe.jobs.fanout.messages import RESULTS, TO_PIN, ToShard
from pushpipe.jobs.fanout.parse import ParseRequests
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.fanout.shard_directory import ShardDirectory
from pushpipe.jobs.policy.decide import PolicyConfig
from pushpipe.jobs.policy.templates import TemplateStore
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import App, MemoryApps

NOON = 1_795_348_800_000  # 2026-11-22 12:00 UTC
TEMPLATES = TemplateStore.from_dict({"templates": {}})
HMS_ONLY = App("shop", "scrypt$x", "salt", vendors=("hms",))
TEST_APP = App("lab", "scrypt$x", "salt", environment="test")


def parser(tmp_path: Path, required: bool = False) -> tuple[ParseRequests, Harness]:
    parse = ParseRequests(load(home=tmp_path, app_registry_required=required), registry=MemoryApps([HMS_ONLY, TEST_APP]))
    return parse, Harness(parse)


def parsed(parse: ParseRequests, request: dict[str, Any]) -> list[Any]:
    """The parser's outputs, a pin push due now (on its way to its pin) as the request it carries."""
    out = parse.process_element(codec.encode("PushRequest", request), None)
    return [item[1].record if isinstance(item, tuple) and item[0] is TO_PIN else item for item in out]


def pin_with(*events: dict[str, Any]) -> dict[str, Any]:
    state = new_pin_state()
    for event in events:
        state["devices"] = apply_event(state["devices"], event)
    return state


def test_a_registered_apps_request_carries_its_environment_and_vendors(tmp_path: Path) -> None:
    parse, _ = parser(tmp_path)
    [request] = parsed(parse, push_request("shop", ["u"], "t", "b", environment="test"))
    assert (request["environment"], request[apprules.VENDORS]) == ("production", ["hms"]), "the registry's, not the request's"
    [request] = parsed(parse, push_request("lab", ["u"], "t", "b"))
    assert request["environment"] == "test"


def test_an_unregistered_app_is_taken_as_before_unless_the_registry_is_required(tmp_path: Path) -> None:
    parse, _ = parser(tmp_path)
    stranger = push_request("stranger", ["u"], "t", "b")
    [request] = parsed(parse, stranger)
    assert apprules.VENDORS not in request and request["environment"] == "production"
    strict, harness = parser(tmp_path / "strict", required=True)
    [(tag, letter)] = parsed(strict, stranger)
    dead = codec.decode("DeadLetter", letter)
    assert tag is DLQ and (dead["error"], dead["app_id"], dead["msg_id"]) == ("unknown_app", "stranger", stranger["msg_id"])
    assert harness.metrics.count_of("pushpipe_dead_letters", stage="parse-requests", error="unknown_app", topic="push.requests") == 1
    assert [r["app_id"] for r in parsed(strict, push_request("shop", ["u"], "t", "b"))] == ["shop"], "a registered app is served"


def test_a_device_of_a_vendor_the_app_may_not_use_is_suppressed_and_said_so() -> None:
    request = apprules.with_app_rules(push_request("shop", ["u"], "t", "b"), HMS_ONLY, required=False)
    state = pin_with(device_event("shop", "u", "hms1", vendor="hms"), device_event("shop", "u", "ios1"))
    result = expand_for_pin(request, "u", state, NOON, PolicyConfig(), TEMPLATES)
    assert [(vendor, [t for t, *_ in targets]) for (vendor, _), (_, targets) in result.groups.items()] == [("hms", ["hms1"])]
    assert result.not_sent == [Unsent("ios1", "suppressed", apprules.VENDOR_NOT_ALLOWED)] and result.suppressed is None


def test_a_pin_with_only_barred_devices_says_so_for_each_and_counts_no_cap() -> None:
    request = apprules.with_app_rules(push_request("shop", ["u"], "t", "b", category="marketing"), HMS_ONLY, required=False)
    state = pin_with(device_event("shop", "u", "ios1"), device_event("shop", "u", "ios2"))
    result = expand_for_pin(request, "u", state, NOON, PolicyConfig(), TEMPLATES)
    assert not result.groups and result.suppressed is None
    assert result.not_sent == [Unsent(t, "suppressed", apprules.VENDOR_NOT_ALLOWED) for t in ("ios1", "ios2")]
    assert result.state["caps"] == state["caps"]


def test_a_test_app_reaches_only_test_devices() -> None:
    request = apprules.with_app_rules(push_request("lab", ["u"], "t", "b"), TEST_APP, required=False)
    state = pin_with(device_event("lab", "u", "prod1"), device_event("lab", "u", "test1", environment="test"))
    result = expand_for_pin(request, "u", state, NOON, PolicyConfig(), TEMPLATES)
    assert [[t for t, *_ in targets] for _, targets in result.groups.values()] == [["test1"]]
    assert result.not_sent == [Unsent("prod1", "suppressed", TEST_TO_PRODUCTION)]


def test_without_rules_every_vendor_is_allowed_as_before() -> None:
    request = push_request("stranger", ["u"], "t", "b")
    state = pin_with(device_event("stranger", "u", "hms1", vendor="hms"), device_event("stranger", "u", "ios1"))
    result = expand_for_pin(request, "u", state, NOON, PolicyConfig(), TEMPLATES)
    assert sorted(vendor for vendor, _ in result.groups) == ["apns", "hms"] and not result.not_sent
    assert apprules.vendor_allowed({**request, apprules.VENDORS: []}, "apns"), "an app with no vendors listed may use all"


def test_a_broadcast_shard_counts_the_barred_devices_and_a_token_push_says_so(tmp_path: Path) -> None:
    def device(**change: object) -> dict[str, Any]:
        return {"pin": "u", "vendor": "hms", "platform": "android", "environment": "production", "brand": "", "app_version": "1.0",
                "locale": "", "fallback_token": None, "tags": [], "enabled": True, **change}

    broadcast = apprules.with_app_rules(push_request("shop", [], "t", "b", target="broadcast"), HMS_ONLY, required=False)
    chosen, skipped = shards.select([("h", device()), ("i", device(vendor="apns")), ("j", device(vendor="apns"))], broadcast)
    assert [t for t, _ in chosen] == ["h"] and skipped == {apprules.VENDOR_NOT_ALLOWED: 2}

    h = Harness(ShardDirectory(load(home=tmp_path)), now=NOON)
    h.process(ToShard(keys.shard_key("shop", "ios1"), "device", device_event("shop", "u", "ios1")))
    tokens = push_request("shop", [], "t", "b", target="tokens", tokens=["ios1"])
    out = h.process(ToShard(keys.shard_key("shop", "ios1"), "token", apprules.with_app_rules(tokens, HMS_ONLY, required=False)))
    outcomes = [o for tag, r in out if tag is RESULTS for o in codec.decode("DispatchResult", r)["outcomes"]]
    assert [(o["token"], o["outcome"], o["reason"]) for o in outcomes] == [("ios1", "suppressed", apprules.VENDOR_NOT_ALLOWED)]
