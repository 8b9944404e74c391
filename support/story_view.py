"""`pushpipe diagnose` and `pushpipe test-push` on screen: the stories as rich tables, the verdict first."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pushpipe.support.explain import when

Doc = Mapping[str, Any]


def _text(value: Any) -> Text:
    return Text("–" if value is None or value == "" else str(value))


def _time(ms: int | None, precise: bool = False) -> Text:
    return Text(when(ms, precise=precise) if ms else "–")


def verdict(lines: Sequence[str]) -> RenderableType:
    return Group(Text("Verdict", style="bold"), *(Text(f"• {line}") for line in lines))


def pin_story(story: Doc) -> RenderableType:
    quiet = story["quiet_hours"]
    about = (f"App {story['app_id']}, pin {story['pin']}: time zone {story['timezone']}, local time {story['local_time']}; "
             f"quiet hours {quiet['start'] + '-' + quiet['end'] + (' (on now)' if quiet['active_now'] else '') if quiet else 'none'}")
    prefs = story["preferences"]
    preferences = (f"Preferences: unsubscribed={prefs['unsubscribed']}, opted out of categories {prefs['opted_out_categories'] or 'none'},"
                   f" channels {prefs['opted_out_channels'] or 'none'}; caps today: "
                   + (", ".join(f"{c['category']} {c['used']}/{c['limit']}" for c in story["caps"]) or "none"))
    return Group(verdict(story["verdict"]), Text(about), Text(preferences), device_table(story["devices"]), push_table(story["pushes"]))


def device_table(devices: Sequence[Doc]) -> Table:
    table = Table("token", "vendor", "brand / model", "OS / app", "env", "state", "switch (history)", "token age", "last receipt",
                  title="Devices", title_justify="left")
    for d in devices:
        history = ", ".join(f"{h['switch']} {when(h['ts'])}" for h in d["switch_history"][:3])
        receipt = d["last_receipt"]
        table.add_row(_text(d["token"]), _text(d["vendor"]), _text(f"{d['brand'] or '–'} / {d['model'] or '–'}"),
                      _text(f"{d['os_version'] or '–'} / {d['app_version'] or '–'}"), _text(d["environment"]),
                      Text(d["state"], style="" if d["state"] == "active" else "bold red"),
                      Text(d["switch"] + (f" ({history})" if history else ""), style="bold red" if d["switch"] == "off" else ""),
                      _text(_age(d["token_age_s"])), _text(f"{receipt['state']} {when(receipt['ts'])}" if receipt else None))
    return table


def _age(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    days, rest = divmod(seconds, 86_400)
    return f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"


def push_table(pushes: Sequence[Doc]) -> Table:
    table = Table("msg id", "category", "requested", "device", "outcome", "sent", "accepted", "delivered", "opened", "why",
                  title="Recent pushes (newest first)", title_justify="left")
    for p in pushes:
        for n, d in enumerate(p["deliveries"]):
            table.add_row(_text(p["msg_id"] if n == 0 else ""), _text(p.get("category") if n == 0 else ""),
                          _time(p["requested_at"]) if n == 0 else Text(""), _text(d["token"] or "(the pin)"),
                          _text(f"{d['vendor']} {d['outcome']} {d['code'] or ''}".strip()), _time(d["sent_at"]),
                          _time(d["completed_at"] if d["outcome"] == "accepted" else None), _time(d["delivered_at"]),
                          _time(d["opened_at"]), Text(d["why"]))
    return table


def message_story(story: Doc) -> RenderableType:
    about = Text(f"App {story['app_id']}, message {story['msg_id']}: {story['category']}, priority {story['priority']}, "
                 f"campaign {story['campaign'] or '–'}, vendors {', '.join(story['vendors']) or '–'}")
    counts = Text("Counts: " + ", ".join(f"{k} {v}" for k, v in sorted(story["counts"].items())))
    return Group(verdict(story["verdict"]), about, counts, hop_table(story["hops"]), failure_table(story["failures"]))


def hop_table(hops: Sequence[Doc]) -> Table:
    table = Table("hop", "first", "median", "last", "devices", "since the hop before", "SLA", title="Path", title_justify="left")
    for h in hops:
        late = h["within_sla"] is False
        table.add_row(Text(h["name"]), _time(h["at"], True), _time(h["median"], True), _time(h["last"], True), _text(h["count"]),
                      Text("–" if h["since_previous_ms"] is None else f"{h['since_previous_ms']:,} ms", style="bold red" if late else ""),
                      Text("–" if h["sla_ms"] is None else f"{h['sla_ms']:,} ms" + (" MISSED" if late else " ok"),
                           style="bold red" if late else "green"))
    return table


def failure_table(failures: Sequence[Doc]) -> RenderableType:
    if not failures:
        return Text("No failures.", style="green")
    table = Table("state", "code", "reason", "count", title="Failures by reason", title_justify="left")
    for f in failures:
        table.add_row(Text(f["state"]), _text(f["code"]), _text(f["reason"]), _text(f["count"]))
    return table


def progress_line(delivery: Doc) -> str:
    """One device's state in a test push, as a line that changes only when its state does."""
    return f"{delivery['token']}: {delivery['why']}"
