"""Delivery receipts, as HMS and Honor send them: batches of
`{"statuses": [{"biTag", "appid", "token", "status", "timestamp", "requestId"}]}` POSTed to the
receipt URL configured for the app (here `SimConfig.receipt_url`), in the background and best
effort through simulators.batchsim.ReceiptOutbox: a failed POST is counted and dropped, never
retried, and never delays the push API.

status 0 = delivered (doopush, 2nd); the other status values are UNCONFIRMED, so only 0 is sent.
"""
from __future__ import annotations

import json
from typing import Any

DELIVERED = 0


def receipt(app_id: str, bi_tag: str, token: str, request_id: str, now: float) -> dict[str, Any]:
    return {"biTag": bi_tag, "appid": app_id, "token": token, "status": DELIVERED,
            "timestamp": int(now * 1000), "requestId": request_id}


BATCH = 100  # statuses per POST


def encode_statuses(statuses: list[dict[str, Any]]) -> list[tuple[bytes, str]]:
    """The POST bodies for these statuses, at most BATCH to a body (for the shared ReceiptOutbox)."""
    return [(json.dumps({"statuses": statuses[i : i + BATCH]}).encode(), "application/json")
            for i in range(0, len(statuses), BATCH)]
