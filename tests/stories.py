"""What the support views read of a message's or a pin's deliveries (sinks/deliveries.py), with connections of
their own, for the stack tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elasticsearch import Elasticsearch

from pushpipe.config import Settings
from pushpipe.sinks import clickhouse, deliveries, elastic


@contextmanager
def stores(settings: Settings) -> Iterator[tuple[Elasticsearch, clickhouse.ClickHouseClient]]:
    es, ch = elastic.connect(settings), clickhouse.connect(settings, create=False)
    try:
        yield es, ch
    finally:
        es.close()
        ch.close()


def of_message(settings: Settings, app_id: str, msg_id: str) -> dict[str, dict[str, Any]]:
    with stores(settings) as (es, ch):
        return deliveries.of_message(es, ch, settings, app_id, msg_id)


def of_pin(settings: Settings, app_id: str, pin: str) -> list[dict[str, Any]]:
    with stores(settings) as (es, ch):
        return deliveries.of_pin(es, ch, settings, app_id, pin)
