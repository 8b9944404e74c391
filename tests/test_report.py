"""`pushpipe report --week` without services: the week's figures from a fake ClickHouse's canned rows (rates, the 7 days,
vendors, top failures, latency, bound parameters), the PNG (size, the figures in its metadata, an empty week), and the
command's output and bad input."""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from PIL import Image
from typer.testing import CliRunner

from pushpipe import cli
from pushpipe.config import load
from pushpipe.schemas import keys
from pushpipe.sinks import clickhouse, lifecycle_ddl
from pushpipe.support import report

END = dt.date(2026, 11, 29)
START = dt.date(2026, 11, 23)


def counts(sent: int = 0, accepted: int = 0, failed: int = 0, delivered: int = 0, opened: int = 0) -> dict[str, int]:
    return {"sent": sent, "accepted": accepted, "failed": failed, "delivered": delivered, "opened": opened}


DAY_ROWS = [  # days without a row are left out, as ClickHouse leaves them out
    {"day": dt.date(2026, 11, 23), **counts(sent=100, accepted=90, failed=10, delivered=81, opened=27)},
    {"day": dt.date(2026, 11, 25), **counts(sent=40, accepted=0, failed=40)},  # nothing accepted: rates 0
    {"day": dt.date(2026, 11, 29), **counts(sent=60, accepted=60, delivered=45, opened=0)},
]
VENDOR_ROWS = [  # in the SQL's order: by name
    {"vendor": "apns", **counts(sent=50, accepted=50, delivered=40, opened=10)},
    {"vendor": "fcm", **counts(sent=110, accepted=60, failed=50, delivered=60, opened=12)},
    {"vendor": "hms", **counts(sent=50, accepted=40, failed=10, delivered=26, opened=5)},
    {"vendor": "", **counts()},  # only suppressed or expired: reached no vendor
]
FAILURE_ROWS = [{"state": state, "code": code, "count": n} for state, code, n in [
    ("throttled", "429", 5), ("invalid_token", "BadDeviceToken", 70), ("undelivered", "80300003", 30), ("rejected", "payload", 3),
    ("unavailable", "", 12), ("switched_off", "off", 30), ("invalid_target", "gone", 1), ("throttled", "quota", 9),
    ("undelivered", "timeout", 2), ("rejected", "", 4)]]
LATENCY_ROWS = [{"due_to_accepted": [120.04, 2500.0], "accepted_to_delivered": [float("nan"), float("nan")]}]


class FakeClickHouse:
    """Answers each query with the canned rows of the table (and grouping) its SQL names; records the queries."""

    def __init__(self, days: list[dict[str, Any]], vendors: list[dict[str, Any]], failures: list[dict[str, Any]],
                 latency: list[dict[str, Any]]) -> None:
        self.answers = {"day": days, "vendor": vendors, "codes_hour": failures, "rollup_day": latency}
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def rows(self, sql: str, settings: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries.append((sql, parameters or {}))
        if "rates_day" in sql:
            return self.answers["vendor" if "GROUP BY vendor" in sql else "day"]
        return self.answers[next(table for table in ("codes_hour", "rollup_day") if f".{table}" in sql)]

    def close(self) -> None:
        self.closed = True


def full() -> FakeClickHouse:
    return FakeClickHouse(DAY_ROWS, VENDOR_ROWS, FAILURE_ROWS, LATENCY_ROWS)


def empty() -> FakeClickHouse:
    """What ClickHouse answers for a week without data: no groups, and one row of nan quantiles."""
    return FakeClickHouse([], [], [], [{"due_to_accepted": [math.nan, math.nan], "accepted_to_delivered": [math.nan, math.nan]}])


def test_totals_and_rates() -> None:
    figures = report.week_figures(full(), END, "shop")
    assert (figures.start, figures.end, figures.app) == (START, END, "shop")
    assert figures.totals == report.Totals(sent=200, accepted=150, failed=50, delivered=126, opened=27,
                                           delivery_rate=126 / 150, open_rate=27 / 126)
    assert report.week_figures(full(), END).app == "all apps"


def test_seven_days_filled_in() -> None:
    days = report.week_figures(full(), END, "shop").days
    assert [d.date for d in days] == [START + dt.timedelta(days=i) for i in range(7)]
    assert [d.sent for d in days] == [100, 0, 40, 0, 0, 0, 60]
    assert days[0] == report.Day(START, 100, 81 / 90, 27 / 81)
    assert (days[2].delivery_rate, days[2].open_rate) == (0, 0)  # nothing accepted, nothing delivered
    assert (days[6].delivery_rate, days[6].open_rate) == (0.75, 0)


def test_vendors_by_sent() -> None:
    vendors = report.week_figures(full(), END).vendors
    assert [v.vendor for v in vendors] == ["fcm", "apns", "hms"]  # most sent first, a tie by name; no row for the vendor-less
    assert vendors[0] == report.VendorFigures("fcm", 110, 60, 1.0, 0.2)
    assert vendors[2] == report.VendorFigures("hms", 50, 40, 26 / 40, 5 / 26)


def test_top_eight_failures() -> None:
    failures = report.week_figures(full(), END).failures
    assert [(f.state, f.code, f.count) for f in failures] == [
        ("invalid_token", "BadDeviceToken", 70), ("switched_off", "off", 30), ("undelivered", "80300003", 30), ("unavailable", "", 12),
        ("throttled", "quota", 9), ("throttled", "429", 5), ("rejected", "", 4), ("rejected", "payload", 3)]


def test_latency_none_without_data() -> None:
    assert report.week_figures(full(), END).latency == report.Latency(120.0, 2500.0, None, None)
    assert report.week_figures(empty(), END).latency == report.Latency(None, None, None, None)
    assert report.week_figures(FakeClickHouse([], [], [], []), END).latency == report.Latency(None, None, None, None)


def test_values_bound_never_in_the_sql() -> None:
    ch = full()
    report.week_figures(ch, END, "shop.eu", db="analytics")
    assert len(ch.queries) == 4
    for sql, parameters in ch.queries:
        assert "shop.eu" not in sql and "2026-11" not in sql
        assert "{app:String}" in sql and "{start:Date}" in sql and "{end:Date}" in sql
        assert "analytics." in sql and "pushpipe." not in sql
        assert (parameters["app"], parameters["start"], parameters["end"]) == ("shop.eu", START, END)
    states = next(p["states"] for sql, p in ch.queries if "codes_hour" in sql)
    assert states == [*lifecycle_ddl.COUNTS["failed"], *lifecycle_ddl.COUNTS["undelivered"]]
    assert all(s not in sql for s in states for sql, _ in ch.queries)

    every_app = full()
    report.week_figures(every_app, END)
    assert all("app" not in parameters and "app_id" not in sql for sql, parameters in every_app.queries)
    with pytest.raises(ValueError, match="database name"):
        report.week_figures(full(), END, db="x; DROP TABLE y")


def test_json_is_plain() -> None:
    figures = report.week_figures(full(), END, "shop")
    document = figures.to_json()
    assert json.loads(json.dumps(document)) == document  # lists, not tuples; dates as text
    assert document["start"] == "2026-11-23" and document["days"][6] == {"date": "2026-11-29", "sent": 60, "delivery_rate": 0.75,
                                                                         "open_rate": 0.0}
    assert document["latency"]["accepted_to_delivered_p99_ms"] is None


def png_figures(path: Path) -> tuple[tuple[int, int], dict[str, Any], str]:
    with Image.open(path) as image:
        return image.size, json.loads(image.text[report.METADATA_KEY]), image.text["Title"]


def test_png_phone_sized_with_its_figures(tmp_path: Path) -> None:
    figures = report.week_figures(full(), END, "shop")
    path = report.render(figures, tmp_path / "deep" / "er" / "week.png")
    size, drawn, title = png_figures(path)
    assert size == (1080, 2340)
    assert drawn == figures.to_json()
    assert title == "pushpipe week 2026-11-23 to 2026-11-29 (UTC), shop"
    assert [p.name for p in path.parent.iterdir()] == ["week.png"]  # no temporary file left

    again = report.week_figures(full(), END - dt.timedelta(days=1), "shop")
    assert report.render(again, path) == path and png_figures(path)[1]["end"] == "2026-11-28"  # replaced


def test_empty_week_renders(tmp_path: Path) -> None:
    figures = report.week_figures(empty(), END)
    assert not figures.has_sends
    assert figures.totals == report.Totals(0, 0, 0, 0, 0, 0.0, 0.0) and len(figures.days) == 7
    assert (figures.vendors, figures.failures) == ((), ())
    size, drawn, _ = png_figures(report.render(figures, tmp_path / "empty.png"))
    assert size == (1080, 2340) and drawn == figures.to_json()


def test_count_and_duration_text() -> None:
    assert [report.count_text(n) for n in (0, 9_999, 12_345, 60_000, 99_960, 456_000, 999_600, 7_800_000)] == [
        "0", "9,999", "12.3k", "60k", "100k", "456k", "1M", "7.8M"]
    assert [report.duration_text(ms) for ms in (None, 420.4, 3200, 95_000, 7_200_000)] == ["–", "420 ms", "3.2 s", "1.6 min", "2.0 h"]


def test_week_default_path_and_app_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ch = full()
    monkeypatch.setattr(clickhouse, "connect", lambda settings, create=True: ch)
    settings = load(home=tmp_path)
    path, figures = report.week(settings, END, "shop")
    assert path == tmp_path / "run" / "reports" / "week-2026-11-29-shop.png" and path.is_file()
    assert figures.totals.sent == 200 and ch.closed
    assert report.week(settings, END)[0].name == "week-2026-11-29-all.png"
    assert report.week(settings)[1].end == dt.datetime.now(dt.UTC).date()

    monkeypatch.setattr(clickhouse, "connect", lambda settings, create=True: pytest.fail("connected with a bad app id"))
    with pytest.raises(keys.InvalidId, match="app_id"):
        report.week(settings, END, "../etc")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.setattr(clickhouse, "connect", lambda settings, create=True: full())
    return tmp_path


def test_cli_prints_path_and_summary(cli_env: Path) -> None:
    result = CliRunner().invoke(cli.app, ["report", "--week", "--app", "shop", "--end", "2026-11-29"])
    assert result.exit_code == 0, result.output
    path = cli_env / "run" / "reports" / "week-2026-11-29-shop.png"
    assert result.stdout.splitlines() == [str(path), "sends          200", "delivery rate  84.0% (126 of 150 accepted)",
                                          "open rate      21.4% (27 of 126 delivered)"]
    assert png_figures(path)[0] == (1080, 2340)

    out = cli_env / "elsewhere" / "w.png"
    assert CliRunner().invoke(cli.app, ["report", "--week", "--out", str(out)]).stdout.splitlines()[0] == str(out) and out.is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["report"], "say which period: --week"),
    (["report", "--app", "shop"], "say which period: --week"),
    (["report", "--week", "--app", "bad app"], "app_id 'bad app' must be"),
    (["report", "--week", "--end", "2026-13-01"], "--end '2026-13-01' is not a date YYYY-MM-DD"),
    (["report", "--week", "--end", "yesterday"], "--end 'yesterday' is not a date YYYY-MM-DD"),
])
def test_cli_bad_input(cli_env: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"pushpipe report: {message}") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output and not (cli_env / "run" / "reports").exists()


def test_cli_clickhouse_down(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(settings: Any, create: bool = True) -> Any:
        raise OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=18123) for http://u:s3cret@127.0.0.1:18123\nmore")

    monkeypatch.setenv("PUSHPIPE_CLICKHOUSE_URL", "http://u:s3cret@127.0.0.1:18123")
    monkeypatch.setattr(clickhouse, "connect", refused)
    result = CliRunner().invoke(cli.app, ["report", "--week"])
    assert result.exit_code == 1
    assert result.stderr.startswith("pushpipe report: ClickHouse at http://u:***@127.0.0.1:18123: Error HTTPConnectionPool")
    assert len(result.stderr.splitlines()) == 1 and "s3cret" not in result.output and "Traceback" not in result.output


def test_cli_png_not_written(cli_env: Path) -> None:
    (cli_env / "taken").mkdir()
    result = CliRunner().invoke(cli.app, ["report", "--week", "--out", str(cli_env / "taken")])  # a folder
    assert result.exit_code == 1 and result.stderr.startswith("pushpipe report: cannot write the PNG: ")
    assert "Traceback" not in result.output and [p.name for p in cli_env.iterdir()] == ["taken"]  # no temporary file left
