"""Elasticsearch: one document per message with its per-token outcomes, for support staff.

Results of one message arrive in many batches (and again after a replay), so each batch
is merged into the message document by a script keyed by token: applying the same
result twice leaves the document as it was.
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
        "outcomes": {
            "type": "nested",
            "properties": {
                "token": {"type": "keyword"},
                "vendor": {"type": "keyword"},
                "outcome": {"type": "keyword"},
                "code": {"type": "keyword"},
                "reason": {"type": "text"},
                "vendor_msg_id": {"type": "keyword"},
                "batch_id": {"type": "keyword"},
                "attempt": {"type": "integer"},
                "completed_at": {"type": "date", "format": "epoch_millis"},
            },
        },
    },
}

# Replace the outcomes of this batch's tokens, then recount; idempotent on replays.
MERGE_SCRIPT = """
Set tokens = new HashSet(params.tokens);
ctx._source.outcomes.removeIf(o -> tokens.contains(o.token));
ctx._source.outcomes.addAll(params.outcomes);
if (!ctx._source.vendors.contains(params.vendor)) { ctx._source.vendors.add(params.vendor); }
ctx._source.last_completed_at = Math.max(ctx._source.last_completed_at, params.completed_at);
Map counts = new HashMap();
for (o in ctx._source.outcomes) { counts.merge(o.outcome, 1, (a, b) -> a + b); }
ctx._source.counts = counts;
"""


def connect(settings: Settings) -> Elasticsearch:
    return Elasticsearch(settings.es_url, request_timeout=30)


def ensure_index(es: Elasticsearch, index: str) -> None:
    if not es.indices.exists(index=index):
        es.indices.create(index=index, mappings=MAPPING, settings={"number_of_replicas": 0}, ignore=400)


def merge_action(index: str, result: dict[str, Any]) -> dict[str, Any]:
    """A bulk update action merging one DispatchResult into its message document."""
    outcomes = [
        {
            "token": o["token"],
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
    ]
    empty = {
        "msg_id": result["msg_id"],
        "app_id": result["app_id"],
        "vendors": [],
        "priority": result["priority"],
        "category": result["category"],
        "campaign": result["campaign"],
        "requested_at": result["requested_at"],
        "last_completed_at": 0,
        "counts": {},
        "outcomes": [],
    }
    return {
        "_op_type": "update",
        "_index": index,
        "_id": result["msg_id"],
        "retry_on_conflict": 10,
        "scripted_upsert": True,
        "upsert": empty,
        "script": {
            "lang": "painless",
            "source": MERGE_SCRIPT,
            "params": {
                "tokens": [o["token"] for o in outcomes],
                "outcomes": outcomes,
                "vendor": result["vendor"],
                "completed_at": result["completed_at"],
            },
        },
    }


def write_results(es: Elasticsearch, index: str, results: list[dict[str, Any]]) -> None:
    """Merge results into message documents; raises if any action failed (the job then retries)."""
    actions = [merge_action(index, r) for r in results]
    helpers.bulk(es, actions, raise_on_error=True, refresh=False)
