"""`pushpipe report --week`: the week's key figures from ClickHouse's day rollups, drawn as one phone-sized PNG.

`week_figures` reads them (rates_day, rollup_day's latency states, codes_hour), `render` draws them (matplotlib's
Agg, no pyplot) and writes them into the PNG's text metadata too, `week` does both for the CLI and the console.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from pushpipe.config import Settings
from pushpipe.sinks.lifecycle_ddl import COUNTS

ALL_APPS = "all apps"
DAYS = 7
TOP_FAILURES = 8
TOP_VENDORS = 8
COUNTED = ("sent", "accepted", "failed", "delivered", "opened")
FAILURE_STATES = (*COUNTS["failed"], *COUNTS["undelivered"])  # refused by a vendor, or not delivered to the device
SIZE_IN, DPI = (3.6, 7.8), 300  # 1080 x 2340 px
METADATA_KEY = "pushpipe-figures"  # the PNG text chunk holding WeekFigures.to_json()
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # as Settings.clickhouse_database: it is formatted into the SQL

Row = dict[str, Any]


class RowSource(Protocol):
    """What week_figures needs of pushpipe.sinks.clickhouse.ClickHouseClient."""

    def rows(self, sql: str, *, parameters: dict[str, Any] | None = None) -> list[Row]: ...


@dataclass(frozen=True)
class Totals:
    sent: int
    accepted: int
    failed: int
    delivered: int
    opened: int
    delivery_rate: float  # delivered / accepted, 0 without any accepted (as the rates_* views)
    open_rate: float  # opened / delivered, 0 without any delivered


@dataclass(frozen=True)
class Day:
    date: dt.date
    sent: int
    delivery_rate: float
    open_rate: float


@dataclass(frozen=True)
class VendorFigures:
    vendor: str
    sent: int
    accepted: int
    delivery_rate: float
    open_rate: float


@dataclass(frozen=True)
class Failure:
    state: str
    code: str
    count: int


@dataclass(frozen=True)
class Latency:
    """Milliseconds over the week; None without data."""
    due_to_accepted_p50_ms: float | None
    due_to_accepted_p99_ms: float | None
    accepted_to_delivered_p50_ms: float | None
    accepted_to_delivered_p99_ms: float | None


@dataclass(frozen=True)
class WeekFigures:
    start: dt.date
    end: dt.date  # inclusive: start + 6 days
    app: str  # the app id, or "all apps"
    totals: Totals
    days: tuple[Day, ...]  # one per day, start to end
    vendors: tuple[VendorFigures, ...]  # most sent first
    failures: tuple[Failure, ...]  # at most 8, the most frequent first
    latency: Latency

    @property
    def has_sends(self) -> bool:
        return self.totals.sent > 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: dates as YYYY-MM-DD, tuples as lists."""
        plain = _plain(self)
        assert isinstance(plain, dict)
        return plain


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# Reading

def week_figures(ch: RowSource, end: dt.date, app_id: str | None = None, db: str = "pushpipe") -> WeekFigures:
    """The 7 days ending with `end` (inclusive), of one app or of all apps."""
    if not _DATABASE.fullmatch(db):
        raise ValueError(f"database name {db!r} must be letters, digits and _")
    start = end - dt.timedelta(days=DAYS - 1)
    where, parameters = _filter(start, end, app_id)
    by_day = {_date(r["day"]): _counted(r) for r in ch.rows(_counts_sql(db, where, "toDate(bucket) AS day", "day"), parameters=parameters)}
    dates = [start + dt.timedelta(days=i) for i in range(DAYS)]
    days = [_totals(by_day.get(d, {})) for d in dates]
    by_vendor = [(str(r["vendor"]), _totals(_counted(r))) for r in ch.rows(_counts_sql(db, where, "vendor", "vendor"), parameters=parameters)]
    failures = ch.rows(_failures_sql(db, where), parameters={**parameters, "states": list(FAILURE_STATES)})
    latency = ch.rows(_latency_sql(db, where), parameters=parameters)
    return WeekFigures(
        start=start, end=end, app=ALL_APPS if app_id is None else app_id,
        totals=_totals({c: sum(getattr(d, c) for d in days) for c in COUNTED}),
        days=tuple(Day(date, t.sent, t.delivery_rate, t.open_rate) for date, t in zip(dates, days, strict=True)),
        vendors=tuple(VendorFigures(vendor, t.sent, t.accepted, t.delivery_rate, t.open_rate)
                      for vendor, t in sorted(by_vendor, key=lambda v: (-v[1].sent, v[0])) if t.sent or t.accepted or t.delivered),
        failures=top_failures(failures),
        latency=_latency(latency[0] if latency else {}),
    )


def _filter(start: dt.date, end: dt.date, app_id: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause every query shares, its values bound on the server."""
    where = "toDate(bucket) BETWEEN {start:Date} AND {end:Date}"
    parameters: dict[str, Any] = {"start": start, "end": end}
    if app_id is not None:
        where += " AND app_id = {app:String}"
        parameters["app"] = app_id
    return where, parameters


def _counts_sql(db: str, where: str, key: str, group: str) -> str:
    return f"""SELECT {key}, sum(sent) AS sent, sum(accepted) AS accepted, sum(failed) AS failed,
           sum(delivered) AS delivered, sum(opened) AS opened
    FROM {db}.rates_day WHERE {where} GROUP BY {group} ORDER BY {group}"""


def _failures_sql(db: str, where: str) -> str:
    return f"""SELECT state, code, sum(n) AS count FROM {db}.codes_hour
    WHERE {where} AND has({{states:Array(String)}}, state)
    GROUP BY state, code HAVING count > 0 ORDER BY count DESC, state, code LIMIT {TOP_FAILURES}"""


def _latency_sql(db: str, where: str) -> str:
    return f"""SELECT quantilesTDigestMerge(0.5, 0.99)(due_to_accepted_ms) AS due_to_accepted,
           quantilesTDigestMerge(0.5, 0.99)(accepted_to_delivered_ms) AS accepted_to_delivered
    FROM {db}.rollup_day WHERE {where}"""


def _date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _counted(row: Row) -> dict[str, int]:
    return {c: int(row.get(c) or 0) for c in COUNTED}


def _totals(counts: dict[str, int]) -> Totals:
    counts = {c: counts.get(c, 0) for c in COUNTED}
    return Totals(**counts, delivery_rate=rate(counts["delivered"], counts["accepted"]), open_rate=rate(counts["opened"], counts["delivered"]))


def rate(part: int, whole: int) -> float:
    """part / whole, 0 when whole is 0: the rates_* views' definition."""
    return part / whole if whole > 0 else 0.0


def top_failures(rows: Sequence[Row]) -> tuple[Failure, ...]:
    failures = [Failure(str(r["state"]), str(r["code"]), int(r["count"])) for r in rows if int(r["count"]) > 0]
    return tuple(sorted(failures, key=lambda f: (-f.count, f.state, f.code))[:TOP_FAILURES])


def _latency(row: Row) -> Latency:
    due = _quantiles(row.get("due_to_accepted"))
    delivered = _quantiles(row.get("accepted_to_delivered"))
    return Latency(due[0], due[1], delivered[0], delivered[1])


def _quantiles(values: Sequence[float] | None) -> tuple[float | None, float | None]:
    """p50 and p99; None for a quantile of no data (ClickHouse answers nan)."""
    p50, p99 = (list(values or []) + [math.nan, math.nan])[:2]
    return _ms(p50), _ms(p99)


def _ms(value: float | None) -> float | None:
    return round(float(value), 1) if value is not None and math.isfinite(value) else None


# Drawing

INK, MUTED, GRID, TILE = "#1f2328", "#6e7781", "#d0d7de", "#f3f6f9"
SENDS, DELIVERY, OPEN, FAILURE = "#4c78a8", "#2e9e5b", "#f08c00", "#d1495b"


def render(figures: WeekFigures, path: Path) -> Path:
    """The figures as a 1080 x 2340 PNG at `path` (parent folders created, replaced atomically), with
    `figures.to_json()` in its text chunk "pushpipe-figures"."""
    fig = Figure(figsize=SIZE_IN, dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    _header(fig, figures)
    if figures.has_sends:
        _tiles(fig, figures.totals)
        _trend(fig, figures.days)
        _vendors(fig, figures.vendors)
        _failures(fig, figures.failures)
        _latency_text(fig, figures.latency)
    else:
        _no_sends(fig, figures)
    fig.text(0.5, 0.012, "delivery rate = delivered / accepted · open rate = opened / delivered", ha="center", fontsize=5, color=MUTED)
    metadata = {"Title": title(figures), METADATA_KEY: json.dumps(figures.to_json())}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            fig.savefig(out, format="png", dpi=DPI, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def title(figures: WeekFigures) -> str:
    return f"pushpipe week {figures.start} to {figures.end} (UTC), {figures.app}"


def summary(figures: WeekFigures) -> list[str]:
    """Three lines for a terminal: sends, delivery rate, open rate."""
    t = figures.totals
    return [f"sends          {t.sent:,}", f"delivery rate  {t.delivery_rate:.1%} ({t.delivered:,} of {t.accepted:,} accepted)",
            f"open rate      {t.open_rate:.1%} ({t.opened:,} of {t.delivered:,} delivered)"]


def _header(fig: Figure, figures: WeekFigures) -> None:
    fig.text(0.05, 0.972, "Push notifications: the week", fontsize=12, fontweight="bold", color=INK, va="center")
    fig.text(0.05, 0.948, f"{figures.start:%a %d %b} – {figures.end:%a %d %b %Y} (UTC) · {figures.app}", fontsize=7.5, color=MUTED,
             va="center")


def _tiles(fig: Figure, totals: Totals) -> None:
    tiles = (("sends", count_text(totals.sent), SENDS), ("delivery rate", f"{totals.delivery_rate:.1%}", DELIVERY),
             ("open rate", f"{totals.open_rate:.1%}", OPEN))
    width, gap = 0.29, 0.02
    for i, (label, value, color) in enumerate(tiles):
        x = 0.05 + i * (width + gap)
        fig.patches.append(FancyBboxPatch((x, 0.855), width, 0.07, boxstyle="round,pad=0,rounding_size=0.012", transform=fig.transFigure,
                                          facecolor=TILE, edgecolor="none", mutation_aspect=SIZE_IN[0] / SIZE_IN[1]))
        fig.text(x + width / 2, 0.897, value, ha="center", va="center", fontsize=15, fontweight="bold", color=color)
        fig.text(x + width / 2, 0.868, label, ha="center", va="center", fontsize=6.5, color=MUTED)


def _section(fig: Figure, y: float, text: str) -> None:
    fig.text(0.05, y, text, fontsize=8.5, fontweight="bold", color=INK, va="center")


def _trend(fig: Figure, days: Sequence[Day]) -> None:
    _section(fig, 0.825, "Sends and rates by day")
    ax = fig.add_axes((0.14, 0.635, 0.72, 0.155))
    x = range(len(days))
    ax.bar(x, [d.sent for d in days], color=SENDS, width=0.6, zorder=2)
    ax.set_ylim(0, max(d.sent for d in days) * 1.15 or 1)
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: count_text(int(v))))
    ax.set_xticks(list(x), [f"{d.date:%a}\n{d.date:%d}" for d in days])
    rates = ax.twinx()
    # a day without sends has no rate: a gap, not a fall to 0
    for values, color in (([d.delivery_rate for d in days], DELIVERY), ([d.open_rate for d in days], OPEN)):
        rates.plot(x, [v if d.sent else math.nan for v, d in zip(values, days, strict=True)], color=color, marker="o", markersize=2.5,
                   linewidth=1.2, zorder=3)
    rates.set_ylim(0, 1.05)
    rates.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    for a in (ax, rates):
        a.tick_params(labelsize=6, length=2, colors=MUTED)
        for spine in a.spines.values():
            spine.set_visible(False)
    ax.grid(axis="y", color=GRID, linewidth=0.5, zorder=0)
    ax.legend([Patch(color=SENDS), Line2D([], [], color=DELIVERY, marker="o", markersize=2.5),
               Line2D([], [], color=OPEN, marker="o", markersize=2.5)], ["sends", "delivery rate", "open rate"],
              loc="lower left", bbox_to_anchor=(-0.12, 1.0), ncol=3, fontsize=6, frameon=False, handlelength=1.2, columnspacing=1)


def _rows_axes(fig: Figure, rect: tuple[float, float, float, float], rows: int, header: bool) -> Axes:
    """Axes for one text row per item, the first at the top: x from 0 to 1, row i at y = i (the header's at -0.9)."""
    ax = fig.add_axes(rect)
    ax.set_xlim(0, 1)
    ax.set_ylim(rows - 0.5, -1.1 if header else -0.5)
    ax.set_axis_off()
    return ax


def _vendors(fig: Figure, vendors: Sequence[VendorFigures]) -> None:
    _section(fig, 0.555, "By vendor")
    shown = vendors[:TOP_VENDORS] if len(vendors) <= TOP_VENDORS else vendors[:TOP_VENDORS - 1]  # and a row for the rest
    ax = _rows_axes(fig, (0.05, 0.385, 0.9, 0.155), TOP_VENDORS, header=True)
    for x, text, ha in ((0.0, "vendor", "left"), (0.2, "sent", "left"), (0.8, "delivery", "right"), (1.0, "open", "right")):
        ax.text(x, -0.9, text, ha=ha, va="center", fontsize=6, color=MUTED)
    most = max((v.sent for v in shown), default=0) or 1
    for i, v in enumerate(shown):
        ax.text(0.0, i, v.vendor or "(none)", va="center", fontsize=7, color=INK)
        ax.barh(i, 0.38 * v.sent / most, left=0.2, height=0.6, color=SENDS)
        ax.text(0.2 + 0.38 * v.sent / most + 0.015, i, count_text(v.sent), va="center", fontsize=6.5, color=INK)
        ax.text(0.8, i, f"{v.delivery_rate:.1%}", ha="right", va="center", fontsize=7, color=DELIVERY)
        ax.text(1.0, i, f"{v.open_rate:.1%}", ha="right", va="center", fontsize=7, color=OPEN)
    if len(vendors) > len(shown):
        rest = vendors[len(shown):]
        ax.text(0.0, len(shown), f"{len(rest)} more: {count_text(sum(v.sent for v in rest))} sent", va="center", fontsize=6.5, color=MUTED)


def _failures(fig: Figure, failures: Sequence[Failure]) -> None:
    _section(fig, 0.36, f"Failures by reason (top {TOP_FAILURES})")
    if not failures:
        fig.text(0.05, 0.33, "No failures this week.", fontsize=7.5, color=DELIVERY, va="center")
        return
    ax = _rows_axes(fig, (0.05, 0.18, 0.9, 0.16), TOP_FAILURES, header=False)
    most = failures[0].count
    for i, f in enumerate(failures):
        label = f"{f.state} · {f.code or 'no code'}"
        ax.text(0.0, i, label if len(label) <= 32 else label[:31] + "…", va="center", fontsize=6.5, color=INK)
        ax.barh(i, 0.3 * f.count / most, left=0.56, height=0.6, color=FAILURE)
        ax.text(0.56 + 0.3 * f.count / most + 0.015, i, count_text(f.count), va="center", fontsize=6.5, color=INK)


def _latency_text(fig: Figure, latency: Latency) -> None:
    _section(fig, 0.14, "Latency")
    for x, text, ha in ((0.62, "p50", "right"), (0.95, "p99", "right")):
        fig.text(x, 0.112, text, ha=ha, va="center", fontsize=6, color=MUTED)
    for y, label, p50, p99 in ((0.085, "due → accepted", latency.due_to_accepted_p50_ms, latency.due_to_accepted_p99_ms),
                               (0.055, "accepted → delivered", latency.accepted_to_delivered_p50_ms, latency.accepted_to_delivered_p99_ms)):
        fig.text(0.05, y, label, va="center", fontsize=7.5, color=INK)
        fig.text(0.62, y, duration_text(p50), ha="right", va="center", fontsize=8, fontweight="bold", color=INK)
        fig.text(0.95, y, duration_text(p99), ha="right", va="center", fontsize=8, fontweight="bold", color=INK)


def _no_sends(fig: Figure, figures: WeekFigures) -> None:
    fig.text(0.5, 0.62, "No sends this week", ha="center", va="center", fontsize=17, fontweight="bold", color=INK)
    fig.text(0.5, 0.57, f"Nothing reached a vendor from {figures.start:%d %b}\nto {figures.end:%d %b %Y} (UTC) for {figures.app}.",
             ha="center", va="center", fontsize=8, color=MUTED, linespacing=1.5)
    fig.text(0.5, 0.51, "A surprise? Check the app id, and that the analytics\njob is running: pushpipe status.", ha="center", va="center",
             fontsize=6.5, color=MUTED, linespacing=1.5)


def count_text(n: int) -> str:
    """1,234; 12.3k; 60k; 456k; 7.8M."""
    if n < 10_000:
        return f"{n:,}"
    for size, unit in ((10**3, "k"), (10**6, "M"), (10**9, "B")):
        value = n / size
        if value < 99.95:
            return f"{value:.1f}".removesuffix(".0") + unit
        if value < 999.5 or unit == "B":
            return f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def duration_text(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


# The command

def week(settings: Settings, end: dt.date | None = None, app_id: str | None = None, out: Path | None = None) -> tuple[Path, WeekFigures]:
    """The week ending with `end` (default: today, UTC) read from ClickHouse and drawn at `out` (default:
    run/reports/week-<end>-<app or all>.png). keys.InvalidId (a ValueError) for a malformed app id."""
    from pushpipe.schemas import keys
    from pushpipe.sinks import clickhouse

    if app_id is not None:
        keys.check_app_id(app_id)
    end = end or dt.datetime.now(dt.UTC).date()
    out = out or settings.run_dir / "reports" / f"week-{end}-{app_id or 'all'}.png"
    ch = clickhouse.connect(settings, create=False)
    try:
        figures = week_figures(ch, end, app_id, settings.clickhouse_database)
    finally:
        ch.close()
    return render(figures, out), figures
