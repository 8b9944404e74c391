"""A message's or a pin's deliveries, for the support views: what was not accepted from Elasticsearch's delivery
documents (sinks/elastic.py), what was accepted from ClickHouse (sinks/accepted.py), in one shape.

A token accepted on a retry may still have its earlier attempt's document (its delete comes with the acceptance,
a bulk later): its acceptance wins. A document of an acceptance (written before acceptances moved to ClickHouse,
whose batches kept no times) wins over its row.
"""
from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from pushpipe.config import Settings
from pushpipe.sinks import accepted, elastic
from pushpipe.sinks.clickhouse import ClickHouseClient

Doc = dict[str, Any]


def of_message(es: Elasticsearch, ch: ClickHouseClient, settings: Settings, app_id: str, msg_id: str,
               size: int = 10_000) -> dict[str, Doc]:
    """Key (elastic.delivery_key: the token, for a token) -> delivery, for up to `size` of each kind."""
    found = elastic.deliveries(es, settings, app_id, msg_id, size)
    return found | {d["token"]: d for d in accepted.of_message(ch, settings, app_id, msg_id, size)
                    if not is_acceptance(found.get(d["token"]))}


def of_pin(es: Elasticsearch, ch: ClickHouseClient, settings: Settings, app_id: str, pin: str, size: int = 100) -> list[Doc]:
    """The `size` newest deliveries to one pin of an app, newest first."""
    documents = elastic.pin_story(es, settings, app_id, pin, size)
    kept = {(d["msg_id"], d["token"]) for d in documents if is_acceptance(d)}
    rows = [d for d in accepted.of_pin(ch, settings, app_id, pin, size) if (d["msg_id"], d["token"]) not in kept]
    replaced = {(d["msg_id"], d["token"]) for d in rows}
    others = [d for d in documents if (d["msg_id"], d["token"]) not in replaced]
    return sorted(others + rows, key=lambda d: d["completed_at"], reverse=True)[:size]


def is_acceptance(document: Doc | None) -> bool:
    return document is not None and document["outcome"] == "accepted"
