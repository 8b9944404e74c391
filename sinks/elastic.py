"""Elasticsearch, for support staff: one document per message and one per delivery.

- messages (`settings.es_index`), id = "<app_id>:<msg_id>": app, category, vendors and counts per outcome. Each
  result is a partial update (no scripts: the integ-test distribution has no painless) carrying
  absolute totals kept by the analytics job in Flink state, so a replay rewrites the same values.
- deliveries (`settings.es_deliveries_index`), id = "<app_id>:<msg_id>|<key>" (schemas/keys.py), key = the
  token, or "pin:<pin>" for a pin's outcome, "<batch id>:<code>" for an aggregated outcome (pins without devices,
  devices skipped in a broadcast shard),
  the batch id for the whole request: the latest outcome of that token that was not accepted (suppressed, expired,
  rejected, failed, or waiting for a retry). Indexed with the batch attempt as external version (`external_gte`), so
  a replayed older attempt is refused with a 409 (ignored by `write`) and never overwrites a newer outcome.
  An accepted token has no document: its record is its ClickHouse lifecycle row, with its batch's times
  (sinks/accepted.py); a document per accepted token cost Elasticsearch 38-72 µs of CPU per broadcast token, the
  pipeline's largest part. A token accepted on a retry deletes the document of its earlier attempt.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from elasticsearch import Elasticsearch, helpers
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from pushpipe.config import Settings
from pushpipe.schemas import keys
from pushpipe.sinks import device_docs

Action = dict[str, Any]
CHUNK_SIZE = 2000  # actions per bulk request: a window can hold 100k+ deliveries
BULK_REPLY = "items.*._id,items.*.status,items.*.error"  # what `write` reads of each item, not the whole reply
# A refresh makes a new segment: every second it was Elasticsearch's busiest thread under a broadcast.
# Readers here (deliveries, pin_story) refresh before they search, so they always see what was written.
INDEX_SETTINGS: dict[str, Any] = {"number_of_replicas": 0, "refresh_interval": "10s"}

MESSAGE_MAPPING: dict[str, Any] = {
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
    },
}

# Identifiers are searched, never sorted or aggregated: no doc values, which halves the terms sorted
# at each refresh (a token, a pin and an id are new terms in every delivery document).
SEARCH_ONLY: dict[str, Any] = {"type": "keyword", "doc_values": False}

DELIVERY_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "msg_id": SEARCH_ONLY,
        "app_id": {"type": "keyword"},
        "pin": SEARCH_ONLY,
        "token": SEARCH_ONLY,
        "vendor": {"type": "keyword"},
        "outcome": {"type": "keyword"},
        "code": {"type": "keyword"},
        "reason": {"type": "keyword", "ignore_above": 1024},  # a long vendor message stays stored, unindexed
        "vendor_msg_id": SEARCH_ONLY,
        "batch_id": SEARCH_ONLY,
        "attempt": {"type": "integer"},
        "final": {"type": "boolean"},
        "campaign": {"type": "keyword"},
        "completed_at": {"type": "date", "format": "epoch_millis"},
        "count": {"type": "integer"},  # an outcome without a token that stands for this many pins or devices
        # the lifecycle's times: requested, taken in by fan-out, due, batched, sent, (accepted:) completed_at; what the
        # receipts said after is in ClickHouse (sinks/receipt_states.py)
        **{f"{hop}_at": {"type": "date", "format": "epoch_millis"} for hop in ("requested", "taken", "due", "batched", "sent")},
    },
}


class OrjsonNdjsonSerializer(NdjsonSerializer):
    """Bulk bodies through orjson: with the standard json module, a third of a broadcast's analytics CPU was JSON."""

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


def connect(settings: Settings) -> Elasticsearch:
    serializers = {"application/json": OrjsonSerializer(), "application/x-ndjson": OrjsonNdjsonSerializer()}
    return Elasticsearch(settings.es_url, request_timeout=30, serializers=serializers)


def ensure_indices(es: Elasticsearch, settings: Settings) -> None:
    """Creates the message, delivery, device and preference indices if missing; an existing one keeps its mapping, gets the refresh interval."""
    for index, mapping in ((settings.es_index, MESSAGE_MAPPING), (settings.es_deliveries_index, DELIVERY_MAPPING),
                           *device_docs.indices(settings)):
        if not es.indices.exists(index=index):  # ignore 400: created meanwhile by another writer
            es.options(ignore_status=400).indices.create(index=index, mappings=mapping, settings=INDEX_SETTINGS)
        else:  # fields added since the index was made (a mapping only grows)
            es.indices.put_mapping(index=index, properties=mapping["properties"])
            es.indices.put_settings(index=index, settings={"refresh_interval": INDEX_SETTINGS["refresh_interval"]})


def delivery_key(outcome: dict[str, Any], batch_id: str) -> str:
    """A delivery's key within its message: the token, the pin, the skipped devices of one reason in one
    broadcast shard, or the whole request (its batch id)."""
    if outcome["token"]:
        return outcome["token"]
    if outcome.get("count"):
        return f"{batch_id}:{outcome['code']}"
    return f"pin:{outcome['pin']}" if outcome["pin"] else batch_id


MESSAGE_FIELDS = ("priority", "category", "campaign", "requested_at")  # of a DispatchResult


def message_action(index: str, record: dict[str, Any], summary: dict[str, Any]) -> Action:
    """A bulk partial update of the message document with one DispatchResult or Receipt (which carries only
    the ids: the message's other fields come with its results, before or after).

    `summary` holds the message's totals so far: {"counts": {...}, "vendors": [...], "last_completed_at": ms};
    counts has the outcomes (accepted, suppressed, ...) and the receipts (delivered, opened, clicked, ...).
    """
    described = {field: record[field] for field in MESSAGE_FIELDS if field in record}
    doc = {"msg_id": record["msg_id"], "app_id": record["app_id"], **described, **summary}
    return {"_op_type": "update", "_index": index, "_id": keys.message_doc_id(record["app_id"], record["msg_id"]),
            "doc": doc, "doc_as_upsert": True,
            "retry_on_conflict": 5}


def delivery_actions(index: str, result: dict[str, Any]) -> list[Action]:
    """One bulk index action per outcome of a DispatchResult that was not accepted, versioned by the batch attempt;
    on a retry (attempt > 0), a delete of each accepted token's earlier outcome."""
    retried = [{"_op_type": "delete", "_index": index, "version": result["attempt"], "version_type": "external_gte",
                "_id": keys.delivery_doc_id(result["app_id"], result["msg_id"], token)}
               for token in accepted_tokens(result)] if result["attempt"] > 0 else []
    return retried + [
        {
            "_op_type": "index",
            "_index": index,
            "_id": keys.delivery_doc_id(result["app_id"], result["msg_id"], delivery_key(o, result["batch_id"])),
            "version": result["attempt"],
            "version_type": "external_gte",  # same attempt again: rewritten as it was; older: 409
            "_source": {
                "msg_id": result["msg_id"],
                "app_id": result["app_id"],
                "pin": o["pin"],
                "token": o["token"],
                "vendor": result["vendor"],
                "outcome": o["outcome"],
                "code": o["code"],
                "reason": o["reason"],
                "vendor_msg_id": o["vendor_msg_id"],
                "batch_id": result["batch_id"],
                "attempt": result["attempt"],
                "final": o["final"],
                "campaign": result["campaign"],
                "completed_at": result["completed_at"],
                "requested_at": result["requested_at"],
                "taken_at": result["taken_at"],
                "due_at": result["due_at"] or result["requested_at"],
                "batched_at": result["batched_at"],
                "sent_at": result["sent_at"],
                "count": o.get("count", 0),
            },
        }
        for o in result["outcomes"] if o["outcome"] != "accepted"
    ]


def accepted_tokens(result: dict[str, Any]) -> list[str]:
    return [*(t for g in result.get("accepted", ()) for t in g["tokens"]),
            *(o["token"] for o in result["outcomes"] if o["outcome"] == "accepted" and o["token"])]


def window_actions(settings: Settings, pairs: list[tuple[dict[str, Any], dict[str, Any]]],
                   devices: Sequence[dict[str, Any]] = ()) -> list[Action]:
    """What a window of (DispatchResult or receipts, message totals) pairs writes: one update per message, with its
    latest totals (they are absolute, so earlier ones in the window would be overwritten), then every delivery;
    then the window's DeviceEvents and PreferenceEvents (those with a `setting`), in order. What each receipt
    said of its delivery is in ClickHouse only (sinks/receipt_states.py)."""
    latest: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
    for record, summary in pairs:  # a message's last totals, with the fields of its last result (receipts have none)
        message = (record["app_id"], record["msg_id"])
        described = record if "batch_id" in record else latest.get(message, (record, summary))[0]
        latest[message] = (described, summary)
    return [*(message_action(settings.es_index, r, s) for r, s in latest.values()),
            *(action for record, _ in pairs if "batch_id" in record for action in delivery_actions(settings.es_deliveries_index, record)),
            *(action for event in devices for action in (
                [device_docs.preference_action(settings.es_preferences_index, event)] if "setting" in event
                else device_docs.device_actions(settings.es_devices_index, event)))]


def write(es: Elasticsearch, actions: Iterable[Action]) -> None:
    """Apply bulk actions in order, CHUNK_SIZE per request; raises if any failed (the job then replays).

    A delivery refused as older than the stored one (a replay) is not a failure.
    """
    failed = [item for _, item in helpers.streaming_bulk(es, actions, chunk_size=CHUNK_SIZE, raise_on_error=False,
                                                         yield_ok=False, filter_path=BULK_REPLY)
              if not _is_stale_delivery(item)]
    if failed:
        raise helpers.BulkIndexError(f"{len(failed)} document(s) failed to index.", failed)


def _is_stale_delivery(item: dict[str, Any]) -> bool:
    """A failed bulk item {op_type: info} that is a version conflict of a versioned index or delete (deliveries: a
    replay of an older attempt), or a delete of what is not there (a replayed tombstone, a retried token whose
    earlier attempt had no document)."""
    ((op_type, info),) = item.items()
    status = info.get("status")
    return (op_type in ("index", "delete") and status == 409) or (op_type == "delete" and status == 404)


def deliveries(es: Elasticsearch, settings: Settings, app_id: str, msg_id: str, size: int = 10_000) -> dict[str, dict[str, Any]]:
    """Key (see delivery_key) -> delivery document, for up to `size` deliveries of one message of one app."""
    docs = _search_deliveries(es, settings, [{"term": {"app_id": app_id}}, {"term": {"msg_id": msg_id}}], size)
    return {delivery_key(d, d["batch_id"]): d for d in docs}


def pin_story(es: Elasticsearch, settings: Settings, app_id: str, pin: str, size: int = 100) -> list[dict[str, Any]]:
    """The most recent deliveries to one pin of an app, newest first."""
    return _search_deliveries(es, settings, [{"term": {"app_id": app_id}}, {"term": {"pin": pin}}], size,
                              sort=[{"completed_at": "desc"}])


def _search_deliveries(es: Elasticsearch, settings: Settings, filters: list[dict[str, Any]], size: int,
                       sort: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Delivery documents matching every filter; refreshes first so all written is found, none if no index yet."""
    lenient = es.options(ignore_status=404)
    lenient.indices.refresh(index=settings.es_deliveries_index)
    found = lenient.search(index=settings.es_deliveries_index, query={"bool": {"filter": filters}}, size=size, sort=sort)
    return [hit["_source"] for hit in found.get("hits", {}).get("hits", [])]
