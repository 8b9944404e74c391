"""What the support views read of a message's or a pin's deliveries (sinks/deliveries.py), with connections of
their own, for the stack tests."""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings
from pushpipe.sinks import clickhouse, deliveries, elastic


def of_message(settings: Settings, app_id: str, msg_id: str) -> dict[str, dict[str, Any]]:
    es, ch = elastic.connect(settings), clickhouse.connect(settings, create=False)
    try:
        return deliveries.of_message(es, ch, settings, app_id, msg_id)
    finally:
        es.close()
        ch.close()


def of_pin(settings: Settings, app_id: str, pin: str) -> list[dict[str, Any]]:
    es, ch = elastic.connect(settings), clickhouse.connect(settings, create=False)
    try:
        return deliveries.of_pin(es, ch, settings, app_id, pin)
    finally:
        es.close()
        ch.close()
