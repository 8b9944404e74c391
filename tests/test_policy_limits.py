"""Pure policy: per-vendor payload limits, and that the estimate is never below what adapters send."""
import json

import pytest

from pushpipe.connectors import apns, fcm, hms, honor, umeng
from pushpipe.connectors.base import Notification
from pushpipe.connectors.limits import PayloadLimit, width
from pushpipe.jobs.policy.limits import PAYLOAD_LIMITS, estimated_bytes, payload_problems


def note(title: str = "Hi", body: str = "Hello", data: dict | None = None) -> dict:
    return {"title": title, "body": body, "data": data or {}, "sound": None, "badge": None, "collapse_id": None,
            "template_id": None, "template_vars": {}}


@pytest.mark.parametrize("vendor", sorted(PAYLOAD_LIMITS))
def test_a_small_notification_fits_every_vendor(vendor: str) -> None:
    assert payload_problems(note(data={"order": "17"}), vendor) == []


@pytest.mark.parametrize(("vendor", "notification", "problem"), [
    ("apns", note(data={"blob": "x" * 4000}), "payload is about 4"),
    ("fcm", note(body="é" * 2000), "over fcm's 4096"),
    ("hms", note(data={"q": '"' * 1700}), "over hms's 4096"),  # quotes are escaped twice in HMS' data string
    ("honor", note(title="t" * 1000, body="b" * 1000), "over honor's 4096"),  # Honor sends the text twice
    ("umeng", note(title="標" * 700), "over umeng's 4096"),
    ("xiaomi", note(title="t" * 50), "title is 50 characters, over xiaomi's 49"),
    ("xiaomi", note(body="b" * 128), "body is 128 characters, over xiaomi's 127"),
    ("xiaomi", note(title="", body="b"), "xiaomi needs a title when there is a body"),
    ("xiaomi", note(data={"k": "v" * 4100}), "over xiaomi's 4095"),
    ("oppo", note(title="t" * 51), "title is 51 characters, over oppo's 50"),
    ("oppo", note(body="b" * 201), "body is 201 characters, over oppo's 200"),
    ("oppo", note(title=""), "oppo needs a title"),
    ("vivo", note(title="中" * 21), "title is 42 width (CJK counts 2), over vivo's 40"),
    ("vivo", note(body="中" * 50 + "x"), "body is 101 width"),
    ("vivo", note(data={"k": "v" * 1000}), "over vivo's 1024"),
    ("meizu", note(title="t" * 33), "title is 33 characters, over meizu's 32"),
    ("meizu", note(body=""), "meizu needs a body"),
    ("fcm", note(data={"from": "x", "google.x": "y", "ok": "z"}), "data key 'from' is reserved by fcm"),
    ("fcm", note(data={"Google.x": "y"}), "data key 'Google.x' is reserved by fcm"),
    ("carrier_pigeon", note(), "no payload limits known for vendor 'carrier_pigeon'"),
])
def test_problems_are_reported(vendor: str, notification: dict, problem: str) -> None:
    problems = payload_problems(notification, vendor)
    assert any(problem in p for p in problems), problems


def test_every_problem_is_reported() -> None:
    assert len(payload_problems(note(title="t" * 60, body="b" * 300), "oppo")) == 2


def test_vivo_width_counts_cjk_twice() -> None:
    assert width("ab中文") == 6
    assert payload_problems(note(title="中" * 20), "vivo") == []


def test_limits_are_configurable() -> None:
    limits = {**PAYLOAD_LIMITS, "vivo": PayloadLimit(title_max=60, body_max=200, measure="width")}
    assert payload_problems(note(title="中" * 25), "vivo", limits) == []


def actual_size(vendor: str, n: Notification) -> int:
    """What the real adapter counts against its byte limit."""
    if vendor == "apns":
        return len(json.dumps(apns.build_payload(n), separators=(",", ":"), ensure_ascii=False).encode())
    if vendor == "fcm":
        return fcm.payload_size(fcm.build_message(n, "token", 0))
    if vendor == "hms":
        return hms.payload_size(hms.build_message(n, ["token"]))
    if vendor == "honor":
        return hms.payload_size(honor.build_request(n, ["token"]))
    if vendor == "umeng":
        return len(json.dumps(umeng.build_payload(n), separators=(",", ":"), ensure_ascii=False).encode())
    return len(json.dumps({**n.data, "msg_id": n.msg_id}, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.mark.parametrize("vendor", ["apns", "fcm", "hms", "honor", "umeng", "xiaomi"])
@pytest.mark.parametrize(("title", "body", "data"), [
    ("T", "B", {}),
    ("Order shipped", "Your order 17 is on its way", {"order": "17", "deeplink": "app://orders/17"}),
    ("订单已发货", "您的订单\n\"17\" 已发货", {"说明": "引号\"与\\反斜杠", "k": "v" * 300}),
    ("t" * 40, "b" * 120, {f"k{i}": "x" * 50 for i in range(20)}),
])
def test_estimate_is_never_below_the_adapters_payload(vendor: str, title: str, body: str, data: dict) -> None:
    n = Notification(msg_id="m" * 64, app_id="app", title=title, body=body, data=data, category="c" * 32,
                     collapse_id="x" * 64, ttl_s=2_419_200)
    estimate, actual = estimated_bytes({"title": title, "body": body, "data": data}, PAYLOAD_LIMITS[vendor]), actual_size(vendor, n)
    assert actual <= estimate <= actual + 200
