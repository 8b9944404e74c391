"""Elasticsearch documents of devices and preferences, so that support staff find a pin's devices and settings.

- devices (`settings.es_devices_index`), id = "<app_id>:<token>": the device's attributes from its latest bind or
  report, its `state` (active, unbound, deregistered, cleaned: the vendor said the token is dead) with
  `state_reason`, its notification `switch` (on, off) with `switch_at`; `bound_at` is the latest bind's time.
  Each DeviceEvent is a partial update (doc_as_upsert) in Kafka order, so a replay ends where it began.
  The switch's history is ClickHouse's `device_events` (every event, 400 days).
- preferences (`settings.es_preferences_index`), id = the PreferenceEvent's Kafka key (app|pin|setting): the latest
  event of each setting, as user.preferences' compaction keeps it; a tombstone deletes it. The fan-out's own
  fold (jobs/policy/preferences.py) turns a pin's documents back into its preferences.
"""
from __future__ import annotations

import hashlib
from typing import Any

from elasticsearch import Elasticsearch

from pushpipe.config import Settings
from pushpipe.schemas import keys

Action = dict[str, Any]
Record = dict[str, Any]
KEYWORD = {"type": "keyword"}
TIME = {"type": "date", "format": "epoch_millis"}
ATTRIBUTES = ("pin", "vendor", "platform", "environment", "brand", "model", "os_version", "app_version", "locale", "timezone",
              "tags", "fallback_token")
DEVICE_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "app_id": KEYWORD, "token": KEYWORD, **{a: KEYWORD for a in ATTRIBUTES},
        "state": KEYWORD, "state_reason": {"type": "keyword", "ignore_above": 1024},
        "switch": KEYWORD, "switch_at": TIME, "bound_at": TIME, "updated_at": TIME,
    },
}
PREFERENCE_FIELDS = ("kind", "category", "channel", "timezone", "quiet_start", "quiet_end")
PREFERENCE_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {"app_id": KEYWORD, "pin": KEYWORD, "setting": KEYWORD, **{f: KEYWORD for f in PREFERENCE_FIELDS}, "ts": TIME},
}
# a device's state after each kind of event; a refreshed token's old one is "replaced"
STATES = {"bind": "active", "report": "active", "unbind": "unbound", "deregister": "deregistered", "invalid_token": "cleaned"}
SWITCHES = {"switch_on": "on", "switch_off": "off"}


def indices(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    return [(settings.es_devices_index, DEVICE_MAPPING), (settings.es_preferences_index, PREFERENCE_MAPPING)]


def device_change(event: Record) -> dict[str, Any]:
    """The fields one DeviceEvent sets on its device's document."""
    kind, ts = event["kind"], event["ts"]
    if kind in SWITCHES:
        return {"switch": SWITCHES[kind], "switch_at": ts, "updated_at": ts}
    change: dict[str, Any] = {"state": STATES[kind], "state_reason": event.get("reason") or "", "updated_at": ts}
    if kind in ("bind", "report"):
        change.update({a: event.get(a) for a in ATTRIBUTES if a in event})
    if kind == "bind":
        change["bound_at"] = ts
    return change


def device_actions(index: str, event: Record) -> list[Action]:
    """The update of the event's device; on a token refresh, also the old token's: replaced by the new one."""
    actions = [_device_update(index, event["app_id"], event["token"], device_change(event))]
    if event.get("previous_token"):
        replaced = {"state": "replaced", "state_reason": f"refreshed to {event['token']}", "updated_at": event["ts"]}
        actions.append(_device_update(index, event["app_id"], event["previous_token"], replaced))
    return actions


def _device_update(index: str, app_id: str, token: str, change: dict[str, Any]) -> Action:
    return {"_op_type": "update", "_index": index, "_id": f"{app_id}:{token}", "doc": {"app_id": app_id, "token": token, **change},
            "doc_as_upsert": True, "retry_on_conflict": 5}


def preference_action(index: str, event: Record) -> Action:
    """The latest event of a setting (`event["setting"]`, set by the parser), or its deletion (`deleted`)."""
    doc_id = keys.SEP.join((event["app_id"], event["pin"], event["setting"]))
    if len(doc_id.encode()) > keys.ES_ID_BYTES:  # a long category name: its digest keeps the id within Elasticsearch's limit
        doc_id = f"sha256:{hashlib.sha256(doc_id.encode()).hexdigest()}"
    if event.get("deleted"):
        return {"_op_type": "delete", "_index": index, "_id": doc_id}
    doc = {"app_id": event["app_id"], "pin": event["pin"], "setting": event["setting"], "ts": event["ts"],
           **{f: event.get(f) for f in PREFERENCE_FIELDS}}
    return {"_op_type": "index", "_index": index, "_id": doc_id, "_source": doc}


def devices_of_pin(es: Elasticsearch, settings: Settings, app_id: str, pin: str, size: int = 100) -> list[dict[str, Any]]:
    """The pin's devices in this app (every state), the most recently changed first."""
    return _search(es, settings.es_devices_index, app_id, "pin", pin, size, [{"updated_at": "desc"}])


def device(es: Elasticsearch, settings: Settings, app_id: str, token: str) -> dict[str, Any] | None:
    found = _search(es, settings.es_devices_index, app_id, "token", token, 1, None)
    return found[0] if found else None


def preferences_of_pin(es: Elasticsearch, settings: Settings, app_id: str, pin: str) -> list[dict[str, Any]]:
    """The pin's latest preference events, one per setting, oldest first (the order to fold them in)."""
    return _search(es, settings.es_preferences_index, app_id, "pin", pin, 1000, [{"ts": "asc"}])


def _search(es: Elasticsearch, index: str, app_id: str, field: str, value: str, size: int,
            sort: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    lenient = es.options(ignore_status=404)  # no index yet: nothing written yet
    lenient.indices.refresh(index=index)  # what was written since the last refresh (every 10 s) is found too
    query = {"bool": {"filter": [{"term": {"app_id": app_id}}, {"term": {field: value}}]}}
    found = lenient.search(index=index, query=query, size=size, sort=sort)
    return [hit["_source"] for hit in found.get("hits", {}).get("hits", [])]
