"""`pushpipe status` on screen (rich tables) and for scripts (one JSON document)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pushpipe.infra.stack import ComponentStatus
from pushpipe.stream_health import StageFigures, StreamHealth

NONE = Text("–", style="dim")  # no series, or not measured for that stage
# every cell is a Text: a plain str would be read as rich markup, and lose its [brackets] (an IPv6 address, a reason)


def console() -> Console:
    """stdout; off a terminal (a pipe, a log) wide enough that no table is wrapped at 80 columns."""
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 400)
    return out


def document(components: Sequence[ComponentStatus], health: StreamHealth) -> dict[str, Any]:
    """Everything status shows, for --json."""
    return {"components": [dataclasses.asdict(c) for c in components],
            "prometheus": {"url": health.prometheus_url, "error": health.error},
            "stages": [dataclasses.asdict(s) for s in health.stages],
            "alerts": [dataclasses.asdict(a) for a in health.alerts]}


def render(components: Sequence[ComponentStatus], health: StreamHealth, title: str = "") -> RenderableType:
    parts: list[RenderableType] = [Text(title, style="bold")] if title else []
    parts.append(component_table(components))
    if health.error:
        parts.append(Text(f"No stage figures or alerts: {health.error}", style="bold red"))
    else:
        parts += [stage_table(health.stages), alert_table(health) if health.alerts else Text("No alerts firing.", style="green")]
    return Group(*parts)


def component_table(components: Sequence[ComponentStatus]) -> Table:
    table = Table("component", "version", "address", "health", "restarts", title="Components", title_justify="left")
    for c in components:
        health = Text("up" if c.ok else "DOWN", style="green" if c.ok else "bold red") + (f" ({c.detail})" if c.detail else "")
        restarts = f"{c.restarts} (last {c.last_restart})" if c.last_restart else "0"
        table.add_row(Text(c.name), Text(c.version), Text(c.address), health, Text(restarts, style="yellow" if c.restarts else ""))
    return table


def _shown(value: float | None, fmt: Callable[[float], str], bad: Callable[[float], bool] = lambda v: False) -> Text:
    return NONE if value is None else Text(fmt(value), style="bold red" if bad(value) else "")


def stage_table(stages: Sequence[StageFigures]) -> Table:
    table = Table("stage", "throughput", "consumer lag", "failure rate", "p99 due→accepted", "dead letters", "open breakers",
                  "alerts", title="Stages (Prometheus)", title_justify="left")
    for s in stages:
        table.add_row(Text(f"  {s.vendor}") if s.vendor else Text(s.stage, style="bold"),
                      _shown(s.throughput, lambda v: f"{v:,.2f} {s.unit}"),
                      _shown(s.consumer_lag, lambda v: f"{v:,.0f}", lambda v: v > 10_000),  # ConsumerLagGrowing's bound
                      _shown(s.failure_rate, lambda v: f"{v:.1%}", lambda v: v > 0.2),  # VendorFailureRateHigh's
                      _shown(s.p99_latency_s, lambda v: f"{v:.2f} s", lambda v: v > 30),  # DeliveryLatencyHigh's SLO
                      _shown(s.dead_letters_per_s, lambda v: f"{v:.2f}/s", lambda v: v > 1),  # DeadLettersHigh's
                      _shown(s.open_breakers, str, lambda v: v > 0),
                      _shown(s.firing_alerts, str, lambda v: v > 0))
    return table


def alert_table(health: StreamHealth) -> Table:
    table = Table("alert", "severity", "stage", "since", "summary", title="Firing alerts", title_justify="left")
    for a in health.alerts:
        table.add_row(Text(a.name, style="bold red"), Text(a.severity), Text(a.stage or ""), Text(_utc(a.active_since)), Text(a.summary))
    return table


def _utc(rfc3339: str) -> str:
    """Prometheus's activeAt ("2026-11-29T20:44:20.796966092Z") to the second."""
    return f"{rfc3339[:19].replace('T', ' ')} UTC" if rfc3339 else ""


def rows_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """A query's rows (dicts sharing their keys) as a table: `pushpipe sql`, the demo."""
    table = Table(*rows[0].keys()) if rows else Table()
    for row in rows:
        table.add_row(*(Text(str(v)) for v in row.values()))
    return table


def watch_title(every_s: float) -> str:
    return f"pushpipe status at {time.strftime('%H:%M:%S')}, every {every_s:g} s (Ctrl-C to stop)"
