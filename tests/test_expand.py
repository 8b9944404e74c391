"""Pure per-pin expansion and device shards: policy, isolation, templates, limits, segments."""
from pushpipe.jobs.fanout import devices, shards
from pushpipe.jobs.fanout.devices import apply_event
from pushpipe.jobs.fanout.expand import TEST_TO_PRODUCTION, expand_for_pin, new_pin_state
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.policy.caps import CapConfig
from pushpipe.jobs.policy.decide import PolicyConfig
from pushpipe.jobs.policy.preferences import apply_preference
from pushpipe.jobs.policy.templates import TemplateStore
from pushpipe.producer import device_event, push_request
from pushpipe.schemas import keys

NOON = 1_795_348_800_000  # 2026-11-22 12:00 UTC
TEMPLATES = TemplateStore.from_dict({"templates": {"shipped": {"default_locale": "en", "variants": {
    "en": {"title": "Order {order} shipped", "body": "Arriving today"},
    "de": {"title": "Bestellung {order} versandt", "body": "Kommt heute"}}}}})


def pin_with(*events: dict) -> dict:
    state = new_pin_state()
    for event in events:
        state["devices"] = apply_event(state["devices"], event)
    return state


def test_devices_are_grouped_by_vendor_and_rendered_text() -> None:
    state = pin_with(device_event("a", "u1", "t-en", locale="en-US"), device_event("a", "u1", "t-de", locale="de-DE"),
                     device_event("a", "u1", "t-fcm", vendor="fcm", locale="en"))
    request = push_request("a", ["u1"], "", "", notification={"template_id": "shipped", "template_vars": {"order": "42"}})
    result = expand_for_pin(request, "u1", state, NOON, PolicyConfig(), TEMPLATES)
    titles = {(vendor, r["notification"]["title"]): [t for t, *_ in targets] for (vendor, _), (r, targets) in result.groups.items()}
    assert titles == {("apns", "Order 42 shipped"): ["t-en"], ("apns", "Bestellung 42 versandt"): ["t-de"],
                      ("fcm", "Order 42 shipped"): ["t-fcm"]}


def test_missing_template_variable_rejects_with_the_reason() -> None:
    request = push_request("a", ["u1"], "", "", notification={"template_id": "shipped"})
    result = expand_for_pin(request, "u1", pin_with(device_event("a", "u1", "t1")), NOON, PolicyConfig(), TEMPLATES)
    assert not result.groups and result.not_sent[0][1] == "rejected" and "order" in result.not_sent[0][2]


def test_test_push_reaches_only_whitelisted_devices() -> None:
    state = pin_with(device_event("a", "u1", "prod"), device_event("a", "u1", "dev", environment="test"))
    result = expand_for_pin(push_request("a", ["u1"], "t", "b", environment="test"), "u1", state, NOON, PolicyConfig(), TEMPLATES)
    assert [t for _, (_, targets) in result.groups.items() for t, *_ in targets] == ["dev"]
    assert result.not_sent == [Unsent("prod", "suppressed", TEST_TO_PRODUCTION)]


def test_opt_out_quiet_hours_and_caps() -> None:
    state = pin_with(device_event("a", "u1", "t1"))
    state["prefs"] = apply_preference({}, {"kind": "opt_out", "category": "marketing", "ts": 1})
    marketing = push_request("a", ["u1"], "t", "b", category="marketing")
    assert expand_for_pin(marketing, "u1", state, NOON, PolicyConfig(), TEMPLATES).suppressed.startswith("opted_out")
    state["prefs"] = apply_preference({}, {"kind": "set_quiet_hours", "quiet_start": "11:00", "quiet_end": "13:00", "ts": 1})
    deferred = expand_for_pin(marketing, "u1", state, NOON, PolicyConfig(), TEMPLATES)
    assert deferred.defer_until == NOON + 3_600_000
    otp = push_request("a", ["u1"], "code", "123", category="transactional", priority="high")
    assert expand_for_pin(otp, "u1", state, NOON, PolicyConfig(), TEMPLATES).groups  # bypasses quiet hours
    capped = PolicyConfig(caps=CapConfig(per_day={"news": 1}))
    news = push_request("a", ["u1"], "t", "b", category="news", ttl_s=86400 * 3)
    first = expand_for_pin(news, "u1", pin_with(device_event("a", "u1", "t1")), NOON, capped, TEMPLATES)
    second = expand_for_pin(news, "u1", first.state, NOON + 1000, capped, TEMPLATES)
    assert first.groups and second.suppressed == "frequency_cap:news"


def test_oversize_payload_is_rejected_per_vendor() -> None:
    request = push_request("a", ["u1"], "t", "b", notification={"data": {"blob": "x" * 5000}})
    result = expand_for_pin(request, "u1", pin_with(device_event("a", "u1", "t1")), NOON, PolicyConfig(), TEMPLATES)
    assert not result.groups and result.not_sent[0][1] == "rejected"


def test_shards_spread_tokens_and_follow_moves() -> None:
    spread = {keys.shard_key("a", f"token-{i}") for i in range(1000)}
    assert len(spread) == keys.SHARDS
    bound = shards.summary_after(None, device_event("a", "u1", "t1", tags=["vip"], app_version="2.3.0"))
    moved = device_event("a", "u2", "t1")
    assert shards.moved_from(bound, moved) == "u1"
    stale_unbind = device_event("a", "u1", "t1", kind="unbind")
    assert shards.summary_after({**bound, "pin": "u2"}, stale_unbind)["pin"] == "u2"
    assert shards.matches({"tag": "vip", "app_version": "2.1", "platform": "IOS"}, bound)
    assert not shards.matches({"app_version": "2.10"}, bound)


def test_a_device_without_a_pin_is_a_user_of_its_own_until_it_is_bound() -> None:
    anonymous = shards.summary_after(None, device_event("a", "", "t1"))
    assert anonymous["pin"] == "" and keys.pin_of(keys.user_key("a", "", "t1")) == ""
    assert keys.user_key("a", "", "t1") != keys.user_key("a", "", "t2") != keys.pin_key("a", "t2")
    assert not {keys.user_key("a", "", "t1")} & {keys.pin_key("a", pin) for pin in ("t1", "|t1", "\x1ft1".strip("\x1f"))}
    assert shards.moved_from(anonymous, device_event("a", "u1", "t1")) == "", "bound: its anonymous user lets go"
    bound = shards.summary_after(anonymous, device_event("a", "u1", "t1"))
    assert shards.moved_from(bound, device_event("a", "", "t1")) == "u1", "signed out: its user lets go"
    assert shards.summary_after(bound, device_event("a", "", "t1", kind="unbind")) == bound, "a stale anonymous unbind"
    assert shards.summary_after(anonymous, device_event("a", "", "t1", kind="invalid_token")) is None
    assert devices.event_problem(device_event("a", "", "t1")) is None
