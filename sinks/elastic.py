"""Elasticsearch: one document per message with its per-token outcomes, for support staff.

Results of one message arrive in many batches (and again after a replay). Each batch is
written as a partial update (no scripts: the integ-test distribution has no painless):
`outcomes` is an object keyed by token, which partial updates merge, so writing the same
result twice leaves the document as it was; `counts` and `vendors` are absolute values
kept by the analytics job in Flink state.
"""
from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch, helpers

from pushpipe.config import Settings

MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "msg_id": {"type": "keyword"},
        "app_id": {"type": "keyword"},
        "vendors": {"type": "keyword"},
        "priority": {"type": "keyword"},
        "category": {"type": "keyword"},
        "campaign": {"type": "keyword"},
        "requested_at": {"type": "date", "format": "epoch_millis"},
        "last_completed_at": {"type": "date", "format": "epoch_millis"},
        "counts": {"type": "object", "dynamic": True},
        # token (or batch id when there was nothing to send to) -> {vendor, outcome, code, reason, vendor_msg_id, batch_id, attempt, completed_at};
        # kept in _source only (not indexed), so millions of tokens never grow the mapping.
        "outcomes": {"type": "object", "enabled": False},
    },
}


def connect(settings: Settings) -> Elasticsearch:
    return Elasticsearch(settings.es_url, request_timeout=30)


def ensure_index(es: Elasticsearch, index: str) -> None:
    if not es.indices.exists(index=index):
        es.options(ignore_status=400).indices.create(index=index, mappings=MAPPING, settings={"number_of_replicas": 0})


def message_update(index: str, result: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """A bulk partial update merging one DispatchResult into its message document.

    `summary` holds the message's totals so far: {"counts": {...}, "vendors": [...], "last_completed_at": ms}.
    """
    outcomes = {
        o["token"] or result["batch_id"]: {
            "vendor": result["vendor"],
            "outcome": o["outcome"],
            "code": o["code"],
            "reason": o["reason"],
            "vendor_msg_id": o["vendor_msg_id"],
            "batch_id": result["batch_id"],
            "attempt": result["attempt"],
            "completed_at": result["completed_at"],
        }
        for o in result["outcomes"]
    }
    doc = {
        "msg_id": result["msg_id"],
        "app_id": result["app_id"],
        "priority": result["priority"],
        "category": result["category"],
        "campaign": result["campaign"],
        "requested_at": result["requested_at"],
        **summary,
        "outcomes": outcomes,
    }
    return {"_op_type": "update", "_index": index, "_id": result["msg_id"], "doc": doc, "doc_as_upsert": True,
            "retry_on_conflict": 5}


def write(es: Elasticsearch, actions: list[dict[str, Any]]) -> None:
    """Apply bulk actions in order; raises if any failed (the job then replays)."""
    if actions:
        helpers.bulk(es, actions, raise_on_error=True, refresh=False)
