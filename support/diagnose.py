"""`pushpipe diagnose`: one pin's or one message's story, with plain-words reasons, for support staff.

Read from what the analytics job keeps where a person can query it: Elasticsearch's device, preference,
message and delivery documents (sinks/device_docs.py, sinks/elastic.py: what was not accepted), and ClickHouse's
device events (switch history), lifecycle events (what was accepted: sinks/accepted.py; caps used today; what the
receipts said: sinks/receipt_states.py) and each batch's hop times (sinks/batch_times.py).
Every query is filtered by the app: one app's story never shows another's devices or messages.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from elasticsearch import Elasticsearch

from pushpipe.config import Settings
from pushpipe.jobs.policy import decide, policyfile, preferences, quiet, zones
from pushpipe.schemas import keys
from pushpipe.sinks import batch_times, clickhouse, deliveries, device_docs, elastic, lifecycle_ddl, receipt_states
from pushpipe.support import explain

Story = dict[str, Any]
Doc = dict[str, Any]
RECENT_MESSAGES = 10  # pushes shown in a pin's story
LATEST_EXPLAINED = 3  # of which the verdict explains
NO_VENDOR = "none"  # the vendor of what fan-out did not send: a device's own is shown instead
SWITCH_HISTORY = 20  # changes shown per device
# A hop's SLA: the most it should take after the hop before it (ms); None: no SLA (a person's behaviour).
HOPS: tuple[tuple[str, str, int | None], ...] = (
    ("produced", "requested_at", None), ("taken in", "taken_at", 1_000), ("held until due", "due_at", None),
    ("expanded and batched", "batched_at", 1_000), ("sent", "sent_at", 1_000), ("accepted", "completed_at", 2_000),
    ("delivered", "delivered_at", 60_000), ("opened", "opened_at", None),
)


class NotFound(LookupError):
    """Nothing known of this pin or message in this app; the message says so in plain words."""


def pin_story(settings: Settings, app_id: str, pin: str) -> Story:
    """The pin's devices, preferences, caps, quiet hours, recent pushes with their lifecycles, and `verdict`
    (plain sentences). keys.InvalidId (a ValueError) for a malformed app id or pin; NotFound when the app knows
    nothing of it."""
    keys.check_app_id(app_id)
    keys.check_pin(pin)
    es, ch = elastic.connect(settings), clickhouse.connect(settings, create=False)
    try:
        devices = device_docs.devices_of_pin(es, settings, app_id, pin)
        settings_docs = device_docs.preferences_of_pin(es, settings, app_id, pin)
        found = deliveries.of_pin(es, ch, settings, app_id, pin, size=500)
        if not (devices or settings_docs or found):
            raise NotFound(f"app {app_id!r} knows no pin {pin!r}: no device bound to it, no preference set, no push to it kept")
        return _pin_story(settings, es, ch, app_id, pin, devices, fold(settings_docs), found)
    finally:
        es.close()
        ch.close()


def _pin_story(settings: Settings, es: Elasticsearch, ch: clickhouse.ClickHouseClient, app_id: str, pin: str,
               devices: list[Doc], prefs: Doc, found: list[Doc]) -> Story:
    config = policyfile.policy_config(settings)
    tz = decide.effective_timezone(prefs, {d["token"]: d for d in devices}, config.default_tz)
    start, end = decide.quiet_window(prefs, config)
    now = int(time.time() * 1000)
    quiet_hours = {"start": start, "end": end, "active_now": quiet.defer_until(now, tz, start, end) is not None} if start else None
    history = switch_history(ch, settings, app_id, [d["token"] for d in devices])
    caps = caps_used(ch, settings, app_id, pin, tz, dict(config.caps.per_day), now)
    found = receipt_states.with_receipts(ch, settings, app_id, found)
    shown = [device_view(d, history.get(d["token"], []), found, now) for d in devices]
    vendors = {d["token"]: d.get("vendor") for d in devices}
    pushes = recent_pushes([{**d, "vendor": vendors.get(d.get("token") or "", d["vendor"])} if d.get("vendor") == NO_VENDOR else d
                            for d in found])
    described = messages_described(es, settings, app_id, [p["msg_id"] for p in pushes])
    pushes = [{**p, **described.get(p["msg_id"], {})} for p in pushes]
    story = {"app_id": app_id, "pin": pin, "timezone": tz, "local_time": explain.when(now, ZoneInfo(tz)),
             "quiet_hours": quiet_hours, "preferences": {k: prefs[k] for k in ("opted_out_categories", "opted_out_channels", "unsubscribed")},
             "caps": caps, "devices": shown, "pushes": pushes}
    return {**story, "verdict": pin_verdict(story)}


def fold(settings_docs: Iterable[Doc]) -> Doc:
    """The pin's preferences from its latest event per setting, folded as fan-out folds them."""
    prefs = preferences.new_preferences()
    for doc in settings_docs:
        try:
            prefs = preferences.apply_preference(prefs, doc)
        except preferences.InvalidPreference:
            continue  # fan-out dead-lettered it too
    return prefs


def switch_history(ch: clickhouse.ClickHouseClient, settings: Settings, app_id: str, tokens: list[str]) -> dict[str, list[Doc]]:
    """token -> its notification switch changes, newest first."""
    if not tokens:
        return {}
    rows = ch.rows(f"""SELECT token, kind, toUnixTimestamp64Milli(ts) AS ts FROM {settings.clickhouse_database}.device_events
                       WHERE app_id = {{app:String}} AND token IN {{tokens:Array(String)}} AND kind IN ('switch_on', 'switch_off')
                       ORDER BY ts DESC LIMIT {SWITCH_HISTORY} BY token""", parameters={"app": app_id, "tokens": tokens})
    history: dict[str, list[Doc]] = {}
    for row in rows:
        history.setdefault(row["token"], []).append({"switch": row["kind"].removeprefix("switch_"), "ts": row["ts"]})
    return history


def caps_used(ch: clickhouse.ClickHouseClient, settings: Settings, app_id: str, pin: str, tz: str, limits: Mapping[str, int],
              now: int) -> list[Doc]:
    """Each capped category's sends to the pin since the start of its local day (the messages that reached a vendor)."""
    if not limits:
        return []
    day_start = int(dt.datetime.fromisoformat(zones.local_day(now, tz)).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)
    rows = ch.rows(f"""SELECT category, uniqExact(msg_id) AS used FROM {settings.clickhouse_database}.lifecycle_events
                       WHERE app_id = {{app:String}} AND pin = {{pin:String}} AND ts >= fromUnixTimestamp64Milli({{start:Int64}})
                         AND state IN {{sent:Array(String)}} AND category IN {{capped:Array(String)}}
                       GROUP BY category""",
                   parameters={"app": app_id, "pin": pin, "start": day_start, "sent": list(lifecycle_ddl.COUNTS["sent"]),
                               "capped": list(limits)})
    used = {row["category"]: row["used"] for row in rows}
    return [{"category": c, "used": used.get(c, 0), "limit": limit} for c, limit in sorted(limits.items())]


def device_view(d: Doc, history: list[Doc], deliveries: list[Doc], now: int) -> Doc:
    mine = [x for x in deliveries if x.get("token") == d["token"]]
    return {**{k: d.get(k) for k in ("token", "vendor", "brand", "model", "os_version", "app_version", "environment", "bound_at",
                                      "state", "state_reason", "timezone")},
            "switch": d.get("switch") or "on", "switch_history": history,
            "token_age_s": (now - d["bound_at"]) // 1000 if d.get("bound_at") else None,
            "last_receipt": last_receipt(mine)}


def last_receipt(deliveries: list[Doc]) -> Doc | None:
    """The newest thing a receipt said about any of these deliveries."""
    heard = [(d[f"{s}_at"], s, d.get("receipt_code") or "") for d in deliveries for s in ("delivered", "opened", "clicked")
             if d.get(f"{s}_at")] + [(d["receipt_at"], d["receipt"], d.get("receipt_code") or "") for d in deliveries if d.get("receipt_at")]
    if not heard:
        return None
    ts, state, code = max(heard)
    return {"state": state, "code": code, "ts": ts}


def recent_pushes(deliveries: list[Doc]) -> list[Doc]:
    """The newest RECENT_MESSAGES messages among the deliveries, each with its deliveries and why."""
    by_message: dict[str, list[Doc]] = {}
    for d in sorted(deliveries, key=lambda d: d.get("requested_at") or 0, reverse=True):
        if d["msg_id"] in by_message or len(by_message) < RECENT_MESSAGES:
            by_message.setdefault(d["msg_id"], []).append(d)
    return [push_view(msg_id, ds) for msg_id, ds in by_message.items()]


def messages_described(es: Elasticsearch, settings: Settings, app_id: str, msg_ids: list[str]) -> dict[str, Doc]:
    """msg id -> its category, priority and campaign, from the message documents."""
    if not msg_ids:
        return {}
    found = es.mget(index=settings.es_index, ids=[keys.message_doc_id(app_id, m) for m in msg_ids])
    return {d["_source"]["msg_id"]: {k: d["_source"].get(k) for k in ("category", "priority", "campaign")}
            for d in found["docs"] if d.get("found") and d["_source"].get("app_id") == app_id}


def push_view(msg_id: str, deliveries: list[Doc]) -> Doc:
    shown = [explain.delivery_view(d) for d in deliveries]
    reached = sum(explain.delivered(d) for d in deliveries)
    return {"msg_id": msg_id, "requested_at": deliveries[0].get("requested_at"), "deliveries": shown,
            "outcome_summary": f"delivered to {reached} of {len(deliveries)} device(s)",
            "why": push_why(shown, reached)}


def push_why(shown: list[Doc], reached: int) -> str:
    reasons = list(dict.fromkeys(d["why"] for d in shown))
    if reached:
        return " ".join([f"Delivered to {reached} of {len(shown)} device(s).", *(r for r in reasons if not r.startswith("Delivered"))])
    return " ".join(reasons)


def pin_verdict(story: Story) -> list[str]:
    """Plain sentences: the latest push's story, then what stands in the way of the next one."""
    verdict = [f"{'Latest push' if n == 0 else 'Before it,'} {p['msg_id']} ({p.get('category') or 'unknown category'}): {p['why']}"
               for n, p in enumerate(story["pushes"][:LATEST_EXPLAINED])]
    verdict += device_findings(story["devices"])
    if story["quiet_hours"] and story["quiet_hours"]["active_now"]:
        q = story["quiet_hours"]
        verdict.append(f"Quiet hours ({q['start']}-{q['end']} in {story['timezone']}) are on now: non-urgent pushes wait until they end.")
    prefs = story["preferences"]
    if prefs["unsubscribed"]:
        verdict.append("The user unsubscribed from marketing pushes; service pushes still go out.")
    for kind, items in (("categories", prefs["opted_out_categories"]), ("channels", prefs["opted_out_channels"])):
        if items:
            verdict.append(f"The user opted out of these {kind}: {', '.join(items)}.")
    verdict += [f"The daily cap for {c['category']} is used up ({c['used']} of {c['limit']} today)." for c in story["caps"]
                if c["used"] >= c["limit"]]
    if not story["pushes"]:
        verdict.append("No push to this user is kept (deliveries are kept 30 days in ClickHouse; the newest in Elasticsearch).")
    return verdict


def device_findings(devices: list[Doc]) -> list[str]:
    if not devices:
        return ["The user has no device registered: nothing can reach them until the app binds one."]
    active = [d for d in devices if d["state"] == "active"]
    findings = [f"Device {short(d['token'])} ({d['vendor']}) is {d['state']}" + (f" ({d['state_reason']})" if d.get("state_reason") else "")
                + f" since {explain.when(d.get('updated_at') or d.get('bound_at'))}." for d in devices if d["state"] != "active"]
    findings += [f"Device {short(d['token'])} ({d['vendor']}) has notifications switched off." for d in active if d["switch"] == "off"]
    if not active:
        findings.append("No active device is left: every device was unbound or removed.")
    elif all(d["switch"] == "off" for d in active):
        findings.append("Every active device has notifications switched off: the vendor accepts pushes but the user sees none.")
    return findings


def short(token: str) -> str:
    return token if len(token) <= 16 else f"{token[:8]}…{token[-4:]}"


def message_story(settings: Settings, app_id: str, msg_id: str) -> Story:
    """The message's hops with timings against their SLA, outcome counts, failures by reason, and `verdict`.
    keys.InvalidId for a malformed id; NotFound when this app has no such message."""
    keys.check_app_id(app_id)
    keys.check_msg_id(msg_id)
    es = elastic.connect(settings)
    try:
        message = message_doc(es, settings, app_id, msg_id)
        if message is None:
            raise NotFound(f"app {app_id!r} has no message {msg_id!r} (or none of its results has been counted yet)")
        failures = failures_by_reason(es, settings, app_id, msg_id)
    finally:
        es.close()
    ch = clickhouse.connect(settings, create=False)
    try:  # each batch's hops up to the vendors' answers, then what the receipts said
        times = {**batch_times.of_message(ch, settings, app_id, msg_id), **receipt_states.hop_times(ch, settings, app_id, msg_id)}
        failures = sorted(failures + receipt_states.undelivered(ch, settings, app_id, msg_id), key=lambda f: -f["count"])
    finally:
        ch.close()
    hops = hop_view(times)
    story = {**{k: message.get(k) for k in ("app_id", "msg_id", "category", "priority", "campaign", "requested_at")},
             "vendors": message.get("vendors") or [], "counts": message.get("counts") or {}, "hops": hops, "failures": failures}
    return {**story, "verdict": message_verdict(story)}


def message_doc(es: Elasticsearch, settings: Settings, app_id: str, msg_id: str) -> Doc | None:
    found = es.options(ignore_status=404).get(index=settings.es_index, id=keys.message_doc_id(app_id, msg_id))
    source: Doc | None = found.get("_source") if found.get("found") else None
    return source if source and source.get("app_id") == app_id else None


def hop_view(times: Mapping[str, Doc]) -> list[Doc]:
    """Each hop reached: its first time, since the hop before it (first to first), its SLA and whether it held."""
    hops: list[Doc] = []
    previous: int | None = None
    for name, field, sla in HOPS:
        t = times.get(field) or {}
        if not t.get("n") or (field == "due_at" and previous is not None and t["first"] <= previous):
            continue  # not reached; or due at once, not held by a schedule or quiet hours
        at = int(t["first"])
        since: int | None = at - previous if previous is not None else None
        hops.append({"name": name, "at": at, "last": int(t["last"]), "median": int(t["median"] or at), "count": t["n"],
                     "since_previous_ms": since, "sla_ms": sla,
                     "within_sla": None if sla is None or since is None else since <= sla})
        previous = at
    return hops


def failures_by_reason(es: Elasticsearch, settings: Settings, app_id: str, msg_id: str) -> list[Doc]:
    """The message's deliveries that were not accepted, by state and code (those a receipt said were not delivered
    are in ClickHouse: receipt_states.undelivered)."""
    query = {"bool": {"filter": [{"term": {"app_id": app_id}}, {"term": {"msg_id": msg_id}}, {"term": {"final": True}}],
                      "must_not": {"term": {"outcome": "accepted"}}}}  # the documents hold no acceptance now: older ones do
    aggregated = {"filter": {"range": {"count": {"gt": 0}}}, "aggs": {"n": {"sum": {"field": "count"}}}}
    codes = {"terms": {"field": "code", "size": 20, "missing": ""},
             "aggs": {"reason": {"top_hits": {"size": 1, "_source": ["reason"]}}, "aggregated": aggregated}}
    aggs = {"states": {"terms": {"field": "outcome", "size": 20}, "aggs": {"codes": codes}}}
    found = es.search(index=settings.es_deliveries_index, size=0, query=query, aggs=aggs)
    failures = []
    for state in found["aggregations"]["states"]["buckets"]:
        for c in state["codes"]["buckets"]:
            hit = c["reason"]["hits"]["hits"]
            single = c["doc_count"] - c["aggregated"]["doc_count"]  # an aggregated outcome stands for `count` pins or devices
            failures.append({"state": state["key"], "code": c["key"], "reason": hit[0]["_source"].get("reason", "") if hit else "",
                             "count": single + int(c["aggregated"]["n"]["value"])})
    return sorted(failures, key=lambda f: -f["count"])


NOTHING_COUNTED = ("No delivery of it is counted yet: it may still wait in a backlog or for its schedule, or its results "
                   "are on their way to the index. Ask again in a minute; `pushpipe status` shows each stage's lag.")


def message_verdict(story: Story) -> list[str]:
    counts, hops = story["counts"], story["hops"]
    accepted, delivered, opened = (counts.get(k, 0) for k in ("accepted", "delivered", "opened"))
    verdict = [f"{accepted} device(s) accepted by the vendors, {delivered} delivered, {opened} opened."]
    if not hops and not any(counts.values()) and not story["failures"]:
        return verdict + [NOTHING_COUNTED]
    late = [h for h in hops if h["within_sla"] is False]
    verdict += [f"{h['name'].capitalize()} took {h['since_previous_ms'] / 1000:.1f} s after the hop before, over its SLA of "
                f"{h['sla_ms'] / 1000:.0f} s." for h in late]
    verdict += [f"{f['count']} {f['state']}: {explain.why({'outcome': f['state'], 'code': f['code'], 'reason': f['reason']})}"
                for f in story["failures"][:5] if f["state"] not in explain.RECEIPTS]
    verdict += [f"{f['count']} {f['state']} ({f['code'] or 'no code'}): {explain.RECEIPTS[f['state']].format(code=f['code'])}."
                for f in story["failures"][:5] if f["state"] in explain.RECEIPTS]
    if not late and not story["failures"]:
        verdict.append("Every hop was within its SLA and nothing failed.")
    return verdict
