"""DeadLetter records: the reason a value was refused, and of the value an excerpt, its size and SHA-256.

A dead letter stays far below Kafka's record limit whatever it was sent: a value near the 1 MiB limit plus
the dead letter's own fields would not fit on push.dlq. The jobs and the receipt gateway build them here.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

from pushpipe.schemas import codec

EXCERPT_BYTES = 4096
MAX_REASON_CHARS = 2048
MAX_ID_CHARS = 256  # msg and app ids as carried by a dead letter, cut to this (invalid ones may be huge)


def dead_letter(job: str, topic: str, payload: bytes | None, error: str, reason: str, **ids: Any) -> bytes:
    """An encoded DeadLetter; `ids` are its optional fields (msg_id, app_id)."""
    value = bytes(payload or b"")
    record = codec.new_record(
        "DeadLetter", job=job, source_topic=topic, reason=reason[:MAX_REASON_CHARS], error=error,
        payload=value[:EXCERPT_BYTES], payload_size=len(value), payload_sha256=hashlib.sha256(value).hexdigest(),
        payload_truncated=len(value) > EXCERPT_BYTES, ts=int(time.time() * 1000),
        **{k: v[:MAX_ID_CHARS] if isinstance(v, str) else v for k, v in ids.items()},
    )
    return codec.encode("DeadLetter", record)
