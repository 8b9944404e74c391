"""`pushpipe test-push`: a push to one device or all of a pin's devices, followed to the vendor's answer and
the receipt.

A test push is an ordinary PushRequest (target tokens, high priority, campaign `pushpipe-test-push`, so that
analysts can leave it out) produced with acks=all: it takes the same path as every push, through policy,
the vendor and the receipts, and its story is read where any other's is (Elasticsearch's deliveries).
"""
from __future__ import annotations

import uuid
from typing import Any

from pushpipe.config import Settings
from pushpipe.producer import PushProducer, push_request
from pushpipe.schemas import keys
from pushpipe.sinks import clickhouse, deliveries, device_docs, elastic, receipt_states
from pushpipe.support import explain

CAMPAIGN = "pushpipe-test-push"
ENVIRONMENTS = ("production", "test")


class Refused(ValueError):
    """A test push that must not or cannot be sent; the message says why in plain words."""


def send(settings: Settings, app_id: str, pin: str | None = None, token: str | None = None,
         environment: str = "production") -> dict[str, Any]:
    """Produces the test push; returns {"app_id", "msg_id", "targets": [tokens]}. Refused (a ValueError) for bad
    input: not exactly one of pin and token, a malformed id, no such active device, or a test app's push to a
    production device."""
    keys.check_app_id(app_id)
    if environment not in ENVIRONMENTS:
        raise Refused(f"environment must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}")
    targets = target_devices(settings, app_id, pin, token)
    if environment == "test" and (production := [d["token"] for d in targets if d.get("environment") != "test"]):
        raise Refused(f"a test app's push may not reach a production device: {', '.join(production)} (bind it as a test device)")
    request = push_request(app_id, [], "pushpipe test push", "If you can read this, pushes reach this device.",
                           msg_id=f"test-{uuid.uuid4().hex}", target="tokens", tokens=[d["token"] for d in targets],
                           priority="high", category="transactional", campaign=CAMPAIGN, environment=environment, ttl_s=600)
    producer = PushProducer(settings)
    producer.request(request)
    producer.flush(30)  # acks=all: the request is in Kafka when this returns
    return {"app_id": app_id, "msg_id": request["msg_id"], "targets": request["tokens"]}


def target_devices(settings: Settings, app_id: str, pin: str | None, token: str | None) -> list[dict[str, Any]]:
    """The active devices to test: the token's, or every one of the pin's."""
    if (pin is None) == (token is None):
        raise Refused("give exactly one of a pin (all of its devices) or a device token")
    es = elastic.connect(settings)
    try:
        if token is not None:
            keys.check_token(token)
            device = device_docs.device(es, settings, app_id, token)
            found = [device] if device else []
        else:
            keys.check_pin(pin or "")
            found = device_docs.devices_of_pin(es, settings, app_id, pin or "")
    finally:
        es.close()
    active = [d for d in found if d.get("state") == "active"]
    if not active:
        whose = f"token {token!r}" if token is not None else f"pin {pin!r}"
        known = f" (known, but {found[0]['state']})" if found else ""
        raise Refused(f"app {app_id!r} has no active device for {whose}{known}")
    return active


def progress(settings: Settings, app_id: str, msg_id: str, targets: list[str] | None = None) -> dict[str, Any]:
    """Where the test push is now: {"msg_id", "done", "deliveries": [...with "why"]}; done when every target has its
    vendor's answer and, if accepted, a receipt (delivered, opened, or why not)."""
    keys.check_app_id(app_id)
    keys.check_msg_id(msg_id)
    es, ch = elastic.connect(settings), clickhouse.connect(settings, create=False)
    try:
        delivered = deliveries.of_message(es, ch, settings, app_id, msg_id)
        found = dict(zip(delivered, receipt_states.with_receipts(ch, settings, app_id, list(delivered.values())), strict=True))
    finally:
        es.close()
        ch.close()
    shown = [explain.delivery_view(d) for d in found.values()]
    waiting = [t for t in targets or [] if t not in found]
    shown += [{"token": t, "outcome": None, "why": "Waiting for the vendor's answer."} for t in waiting]
    done = bool(found) and not waiting and all(answered(d) for d in found.values())
    return {"app_id": app_id, "msg_id": msg_id, "done": done, "deliveries": shown}


def summary(now: dict[str, Any]) -> tuple[bool, str]:
    """(every device's vendor accepted it, one line of what came of the test push)."""
    deliveries = now["deliveries"]
    accepted = [d for d in deliveries if d.get("outcome") == "accepted"]
    reached = sum(explain.delivered(d) for d in accepted)
    silent = sum(not answered(d) for d in accepted)
    line = f"accepted for {len(accepted)} of {len(deliveries)} device(s), delivered to {reached}"
    if silent:
        line += f"; no receipt yet from {silent} (offline, switched off without a receipt, or APNs without a Notification Service Extension)"
    return len(accepted) == len(deliveries), line


def answered(d: dict[str, Any]) -> bool:
    """The delivery has come to rest: not accepted (a final failure), or accepted and a receipt said what happened."""
    if d.get("outcome") != "accepted":
        return bool(d.get("final", True))
    return explain.delivered(d) or bool(d.get("receipt"))
