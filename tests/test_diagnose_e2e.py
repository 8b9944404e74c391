"""Diagnosis through the real stack: a user with three devices (one switched off) and quiet hours all day gets a
marketing push (suppressed) and a transactional one (delivered); `pushpipe diagnose` tells both stories in plain
words, a test push is followed to its receipts, and another app sees none of it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.demo import demo_token
from pushpipe.producer import PushProducer, device_event, preference_event, push_request
from pushpipe.support import diagnose, testpush
from test_isolation_e2e import registered, sent

pytestmark = pytest.mark.stack


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushpipe.cli", *args], capture_output=True, text=True, timeout=120)


def settled(settings: Settings, app: str, pin: str, msg_ids: set[str]) -> dict:
    """The pin's story once both pushes are in it and the delivered one has its receipt."""
    def story() -> dict | None:
        try:
            found = diagnose.pin_story(settings, app, pin)
        except diagnose.NotFound:
            return None
        pushes = {p["msg_id"]: p for p in found["pushes"]}
        done = set(pushes) >= msg_ids and any(d["delivered_at"] for p in pushes.values() for d in p["deliveries"])
        return found if done else None
    return observe.wait_for(story, 120, f"the story of {pin} with {msg_ids}")


def test_a_users_story_explains_a_suppressed_and_a_delivered_push(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app, other = f"diag-{run_id}", f"diag2-{run_id}"
    tokens = {vendor: demo_token(vendor, run_id, n) for n, vendor in enumerate(("hms", "xiaomi", "apns"))}
    registered(producer, pipeline, *[device_event(app, "alice", token, vendor=vendor, brand=f"{vendor}-brand", model="m1",
                                                  os_version="14", app_version="5.2", timezone="Asia/Shanghai")
                                     for vendor, token in tokens.items()],
               device_event(app, "alice", tokens["xiaomi"], vendor="xiaomi", kind="switch_off"))
    producer.preference(preference_event(app, "alice", "set_quiet_hours", quiet_start="00:00", quiet_end="23:59"))
    producer.flush()
    observe.wait_fanout_read(pipeline, pipeline.topics.preferences)
    marketing = push_request(app, ["alice"], "Sale", "Today only", category="marketing", ttl_s=120)
    otp = push_request(app, ["alice"], "Code", "123456", category="transactional", priority="high")
    sent(producer, marketing, otp)

    story = settled(pipeline, app, "alice", {marketing["msg_id"], otp["msg_id"]})
    devices = {d["vendor"]: d for d in story["devices"]}
    assert set(devices) == {"hms", "xiaomi", "apns"} and devices["hms"]["brand"] == "hms-brand"
    assert devices["xiaomi"]["switch"] == "off" and [h["switch"] for h in devices["xiaomi"]["switch_history"]] == ["off"]
    assert devices["hms"]["token_age_s"] is not None and devices["hms"]["state"] == "active"
    assert story["timezone"] == "Asia/Shanghai" and story["quiet_hours"] == {"start": "00:00", "end": "23:59", "active_now": True}
    assert story["caps"] == [{"category": "marketing", "used": 0, "limit": 3}]
    pushes = {p["msg_id"]: p for p in story["pushes"]}
    assert "quiet hours" in pushes[marketing["msg_id"]]["why"]
    otp_deliveries = {d["vendor"]: d for d in pushes[otp["msg_id"]]["deliveries"]}
    assert otp_deliveries["hms"]["delivered_at"] and "Delivered at" in otp_deliveries["hms"]["why"]
    assert "switched off" in otp_deliveries["xiaomi"]["why"]
    verdict = " ".join(story["verdict"])
    assert "Quiet hours (00:00-23:59 in Asia/Shanghai) are on now" in verdict
    assert "has notifications switched off" in verdict and marketing["msg_id"] in verdict

    message = diagnose.message_story(pipeline, app, otp["msg_id"])
    hops = [h["name"] for h in message["hops"]]
    assert hops[:6] == ["produced", "taken in", "expanded and batched", "sent", "accepted", "delivered"], hops
    assert all(h["since_previous_ms"] is None or h["since_previous_ms"] >= 0 for h in message["hops"])
    assert message["counts"]["accepted"] == 2 and message["counts"].get("suppressed") == 1
    assert [(f["state"], f["code"]) for f in message["failures"]] == [("suppressed", "switched_off")]

    # another app sees none of it
    with pytest.raises(diagnose.NotFound):
        diagnose.pin_story(pipeline, other, "alice")
    with pytest.raises(diagnose.NotFound):
        diagnose.message_story(pipeline, other, otp["msg_id"])

    # the command line: the same story as JSON; bad input a clear line, never a traceback
    shown = cli("diagnose", app, "--pin", "alice", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["verdict"] == diagnose.pin_story(pipeline, app, "alice")["verdict"]
    for args, said in ((("diagnose", app, "--pin", "nobody"), "knows no pin 'nobody'"),
                       (("diagnose", app, "--msg", "no-such-msg"), "has no message 'no-such-msg'"),
                       (("diagnose", "bad app!", "--pin", "alice"), "app_id 'bad app!' must be"),
                       (("test-push", app, "--pin", "alice", "--environment", "test"), "may not reach a production device")):
        failed = cli(*args)
        assert failed.returncode == 1 and said in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_a_test_push_is_followed_to_the_vendor_and_the_receipt(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"tpush-{run_id}"
    hms, apns = demo_token("hms", run_id, 1), demo_token("apns", run_id, 2)
    registered(producer, pipeline, device_event(app, "bob", hms, vendor="hms"), device_event(app, "bob", apns, vendor="apns"))
    observe.wait_for(lambda: len(testpush.target_devices(pipeline, app, "bob", None)) == 2, 60, "bob's devices in Elasticsearch")

    push = testpush.send(pipeline, app, pin="bob")
    assert sorted(push["targets"]) == sorted([hms, apns])
    def hms_delivered() -> dict | None:
        now = testpush.progress(pipeline, app, push["msg_id"], push["targets"])
        return now if {d["token"]: d for d in now["deliveries"]}[hms].get("delivered_at") else None
    now = observe.wait_for(hms_delivered, 90, "the test push's receipt")
    by_token = {d["token"]: d for d in now["deliveries"]}
    assert by_token[apns]["outcome"] == "accepted"
    ok, line = testpush.summary(now)
    assert ok and "accepted for 2 of 2" in line

    followed = cli("test-push", app, "--token", hms, "--timeout", "60")
    assert followed.returncode == 0, followed.stderr
    assert "Delivered at" in followed.stdout and "accepted for 1 of 1 device(s), delivered to 1" in followed.stdout
    with pytest.raises(testpush.Refused, match="no active device"):
        testpush.send(pipeline, app, pin="nobody")
