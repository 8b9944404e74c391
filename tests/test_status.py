"""`pushpipe status`: each stage's figures from a fake Prometheus (httpx's MockTransport, or a local HTTP server for the
CLI), the figures' PromQL run by promtool on made-up series, the JSON document, and every command's --help."""
from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from pushpipe import cli, status_view, stream_health
from pushpipe.infra import stack
from pushpipe.infra.stack import ComponentStatus
from pushpipe.stream_health import QUERIES, StageFigures
from test_alert_rules import promtool

# per (figure, rows) of a query: the series Prometheus answers, as (labels, value)
SERIES: dict[tuple[str, str], list[tuple[dict[str, str], str]]] = {
    ("throughput", "job_name"): [({"job_name": "fanout"}, "12.5"), ({"job_name": "analytics"}, "40"), ({"job_name": "other"}, "9")],
    ("throughput", "dispatch"): [({}, "30")],
    ("throughput", "vendor"): [({"vendor": "hms"}, "10"), ({"vendor": "apns"}, "20")],
    ("throughput", "gateway"): [({}, "0")],
    ("consumer_lag", "job_name"): [({"job_name": "fanout"}, "0"), ({"job_name": "dispatch"}, "1234")],
    ("failure_rate", "dispatch"): [({}, "0.25")],
    ("failure_rate", "vendor"): [({"vendor": "apns"}, "0"), ({"vendor": "hms"}, "0.75")],
    ("p99_latency_s", "dispatch"): [({}, "2.5")],
    ("p99_latency_s", "vendor"): [({"vendor": "apns"}, "2.5"), ({"vendor": "hms"}, "NaN"), ({"vendor": "fcm"}, "+Inf")],
    ("dead_letters_per_s", "job_name"): [({"job_name": "fanout"}, "0.5")],
    ("dead_letters_per_s", "gateway"): [({}, "0.1")],
    ("open_breakers", "dispatch"): [({}, "1")],
    ("open_breakers", "vendor"): [({"vendor": "apns"}, "0"), ({"vendor": "hms"}, "1")],
}
ALERTS = [
    {"labels": {"alertname": "VendorBreakerOpen", "severity": "page", "vendor": "hms", "exit": "hms-a"},
     "annotations": {"summary": "hms exit hms-a: circuit breaker open for a minute"}, "state": "firing",
     "activeAt": "2026-11-29T20:44:20.796966092Z", "value": "1"},
    {"labels": {"alertname": "JobDown", "severity": "page", "job": "pushpipe-fanout"}, "annotations": {"summary": "fanout down"},
     "state": "firing", "activeAt": "2026-11-29T20:40:00Z", "value": "70"},
    {"labels": {"alertname": "ConsumerLagGrowing", "severity": "page", "job_name": "analytics"}, "annotations": {},
     "state": "pending", "activeAt": "2026-11-29T20:45:00Z", "value": "20000"},
]


def answer(path: str, query: str | None) -> tuple[int, dict[str, Any]]:
    """What the fake Prometheus says: each known figure's series, the alerts; a query it does not know is a bad query."""
    if path == "/api/v1/alerts":
        return 200, {"status": "success", "data": {"alerts": ALERTS}}
    known = {q.expr: (q.figure, q.rows) for q in QUERIES}
    if path != "/api/v1/query" or query not in known:
        return 400, {"status": "error", "errorType": "bad_data", "error": "parse error"}
    result = [{"metric": labels, "value": [1795985000.0, value]} for labels, value in SERIES.get(known[query], [])]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def mock_prometheus(request: httpx.Request) -> httpx.Response:
    status, body = answer(request.url.path, request.url.params.get("query"))
    return httpx.Response(status, json=body)


@pytest.fixture
def prometheus_url() -> Iterator[str]:
    """The fake Prometheus on a local HTTP server (ephemeral port), for the CLI, which builds its own client."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = answer(url.path, parse_qs(url.query).get("query", [None])[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def read_fake() -> stream_health.StreamHealth:
    return stream_health.read("http://prometheus.test", transport=httpx.MockTransport(mock_prometheus))


def test_each_figure_lands_in_its_stages_row_and_vendors_follow_dispatch() -> None:
    health = read_fake()
    assert health.error is None
    rows = {(s.stage, s.vendor): s for s in health.stages}
    assert list(rows) == [("fanout", None), ("dispatch", None), ("dispatch", "apns"), ("dispatch", "fcm"), ("dispatch", "hms"),
                          ("analytics", None), ("gateway", None)]  # the job "other" is no stage of pushpipe's
    assert rows["fanout", None] == StageFigures("fanout", unit="records/s", throughput=12.5, consumer_lag=0, dead_letters_per_s=0.5,
                                                firing_alerts=1)
    assert rows["dispatch", None] == StageFigures("dispatch", unit="tokens/s", throughput=30, consumer_lag=1234, failure_rate=0.25,
                                                  p99_latency_s=2.5, open_breakers=1, firing_alerts=1)
    assert rows["dispatch", "hms"] == StageFigures("dispatch", "hms", unit="tokens/s", throughput=10, failure_rate=0.75,
                                                   open_breakers=1, firing_alerts=1)  # p99 NaN: None
    assert rows["dispatch", "apns"].firing_alerts == 0 and rows["dispatch", "fcm"].p99_latency_s is None  # +Inf: None
    assert rows["analytics", None].throughput == 40 and rows["analytics", None].firing_alerts == 0  # its alert is only pending
    assert rows["gateway", None] == StageFigures("gateway", unit="receipts/s", throughput=0, dead_letters_per_s=0.1)
    assert isinstance(rows["dispatch", None].consumer_lag, int) and isinstance(rows["dispatch", None].open_breakers, int)


def test_only_firing_alerts_are_listed_each_with_its_stage() -> None:
    alerts = read_fake().alerts
    assert [(a.name, a.stage, a.severity) for a in alerts] == [("VendorBreakerOpen", "dispatch", "page"), ("JobDown", "fanout", "page")]
    assert alerts[0].summary.startswith("hms exit hms-a") and alerts[0].labels["vendor"] == "hms"
    assert stream_health.alert_stage({"job": "gateway", "instance": "x"}) == "gateway"
    assert stream_health.alert_stage({"job_name": "analytics", "job": "pushpipe-analytics"}) == "analytics"
    assert stream_health.alert_stage({"alertname": "DeadLettersHigh"}) is None


def test_a_refused_query_or_no_prometheus_gives_no_figures_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_health, "QUERIES", QUERIES + (stream_health.Query("throughput", "gateway", "sum(("),))
    refused = read_fake()
    assert refused.stages == [] and refused.alerts == []
    assert refused.error is not None and "parse error" in refused.error and "sum((" in refused.error
    down = stream_health.read(closed_port_url().replace("//", "//admin:s3cret@"), timeout_s=2)
    assert down.stages == [] and down.error is not None and "did not answer" in down.error
    assert "admin:***@" in down.error and "s3cret" not in down.error + down.prometheus_url


def promql_tests(tmp_path: Path, series: dict[str, str], expected: dict[tuple[str, str], list[tuple[str, float]]]) -> str:
    """A promtool test file: the input series (one sample every 15 s) and, per query, the samples expected at 2m."""
    tests = [{"expr": q.expr, "eval_time": "2m",
              "exp_samples": [{"labels": labels, "value": value} for labels, value in expected[(q.figure, q.rows)]]}
             for q in QUERIES if (q.figure, q.rows) in expected]
    doc = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": tests}]}
    path = tmp_path / "status_test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_the_figures_promql_on_made_up_series(tmp_path: Path) -> None:
    """Run by promtool: rates per second, no failed tokens yet is a failure rate of 0, an idle gateway's throughput is 0,
    a source that has not read (NaN) adds no lag, breakers count open exits only."""
    nan = " ".join(["NaN"] * 21)  # promtool has no NaNxN
    series = {
        'pushpipe_dispatch_tokens_total{vendor="apns", exit="apns-a", outcome="accepted"}': "0+60x20",  # 4/s
        'pushpipe_dispatch_tokens_total{vendor="apns", exit="apns-a", outcome="rejected"}': "0+15x20",  # 1/s
        'pushpipe_dispatch_tokens_total{vendor="fcm", exit="fcm-a", outcome="accepted"}': "0+30x20",  # 2/s
        'pushpipe_breaker_open{vendor="apns", exit="apns-a"}': "1x20",
        'pushpipe_breaker_open{vendor="apns", exit="apns-b"}': "0.5x20",  # half-open: not counted
        'pushpipe_breaker_open{vendor="fcm", exit="fcm-a"}': "0x20",
        'up{job="gateway"}': "1x20",
        'flink_taskmanager_job_task_operator_pendingRecords{job_name="fanout", operator_name="Source:_kafka:push_requests"}': "7x20",
        'flink_taskmanager_job_task_operator_pendingRecords{job_name="fanout", operator_name="Source:_kafka:user_preferences"}': nan,
        'flink_taskmanager_job_task_operator_numRecordsIn{job_name="analytics", operator_name="Source:_kafka:push_results"}': "0+30x20",
        'flink_taskmanager_job_task_operator_numRecordsIn{job_name="analytics", operator_name="parse_results"}': "0+300x20",  # no source
        'flink_taskmanager_job_task_operator_numRecordsIn{job_name="fanout", operator_name="dlq:_Writer"}': "0+3x20",
    }
    expected = {
        ("throughput", "job_name"): [('{job_name="analytics"}', 2)],
        ("throughput", "dispatch"): [("{}", 7)],
        ("throughput", "vendor"): [('{vendor="apns"}', 5), ('{vendor="fcm"}', 2)],
        ("throughput", "gateway"): [("{}", 0)],
        ("consumer_lag", "job_name"): [('{job_name="fanout"}', 7)],
        ("failure_rate", "dispatch"): [("{}", 1 / 7)],
        ("failure_rate", "vendor"): [('{vendor="apns"}', 0.2), ('{vendor="fcm"}', 0)],
        ("dead_letters_per_s", "job_name"): [('{job_name="fanout"}', 0.2)],
        ("dead_letters_per_s", "gateway"): [("{}", 0)],
        ("open_breakers", "dispatch"): [("{}", 1)],
        ("open_breakers", "vendor"): [('{vendor="apns"}', 1), ('{vendor="fcm"}', 0)],
    }
    assert "SUCCESS" in promtool("test", "rules", promql_tests(tmp_path, series, expected))


def test_the_p99_is_read_from_the_due_to_accepted_histogram(tmp_path: Path) -> None:
    buckets = {"0.5": "0+0x20", "1": "0+99x20", "5": "0+100x20", "+Inf": "0+100x20"}  # 99% within 1 s, 1% within 5 s
    series = {f'pushpipe_batch_due_to_accepted_seconds_bucket{{vendor="hms", priority="high", le="{le}"}}': v for le, v in buckets.items()}
    expected = {("p99_latency_s", "dispatch"): [("{}", 1.0)], ("p99_latency_s", "vendor"): [('{vendor="hms"}', 1.0)]}
    assert "SUCCESS" in promtool("test", "rules", promql_tests(tmp_path, series, expected))


COMPONENTS = [ComponentStatus("kafka", "4.1.1", "127.0.0.1:19092", True, "1 broker(s)", 0, ""),
              ComponentStatus("job-dispatch", "PyFlink 2.2.1", "http://127.0.0.1:18082", False, "RESTARTING: [boom]", 2,
                              "20:39:49: process died")]


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.setattr(stack, "component_statuses", lambda settings: COMPONENTS)


def test_status_json_is_one_document_of_components_stages_and_alerts(settled: None, prometheus_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHPIPE_PROMETHEUS_URL", prometheus_url)
    result = CliRunner().invoke(cli.app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout
    assert list(doc) == ["components", "prometheus", "stages", "alerts"]
    assert doc["prometheus"] == {"url": prometheus_url, "error": None}
    assert doc["components"][1] == {"name": "job-dispatch", "version": "PyFlink 2.2.1", "address": "http://127.0.0.1:18082",
                                    "ok": False, "detail": "RESTARTING: [boom]", "restarts": 2, "last_restart": "20:39:49: process died"}
    assert [(s["stage"], s["vendor"]) for s in doc["stages"]][:3] == [("fanout", None), ("dispatch", None), ("dispatch", "apns")]
    assert set(doc["stages"][0]) == {"stage", "vendor", "unit", "throughput", "consumer_lag", "failure_rate", "p99_latency_s",
                                     "dead_letters_per_s", "open_breakers", "firing_alerts"}
    assert doc["stages"][1]["failure_rate"] == 0.25 and doc["stages"][3]["p99_latency_s"] is None
    assert [a["name"] for a in doc["alerts"]] == ["VendorBreakerOpen", "JobDown"] and doc["alerts"][0]["stage"] == "dispatch"


def test_status_shows_the_tables_and_without_prometheus_still_the_components(settled: None, prometheus_url: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHPIPE_PROMETHEUS_URL", prometheus_url)
    shown = CliRunner().invoke(cli.app, ["status"])
    assert shown.exit_code == 0, shown.output
    for text in ("RESTARTING: [boom]", "2 (last 20:39:49: process died)", "12.50 records/s", "1,234", "25.0%", "2.50 s", "0.50/s",
                 "VendorBreakerOpen", "2026-11-29 20:44:20 UTC", "hms exit hms-a: circuit breaker open"):
        assert text in shown.stdout, text
    monkeypatch.setenv("PUSHPIPE_PROMETHEUS_URL", closed_port_url())
    down = CliRunner().invoke(cli.app, ["status"])
    assert down.exit_code == 0 and "job-dispatch" in down.stdout and "kafka" in down.stdout
    assert "did not answer" in down.stdout and "Stages" not in down.stdout
    doc = json.loads(CliRunner().invoke(cli.app, ["status", "--json"]).stdout)
    assert "did not answer" in doc["prometheus"]["error"] and doc["stages"] == [] and len(doc["components"]) == 2


def test_status_watch_refreshes_until_ctrl_c(settled: None, prometheus_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHPIPE_PROMETHEUS_URL", prometheus_url)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the third wait is interrupted
        waits.append(seconds)
        if len(waits) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", sleep)
    lines = CliRunner().invoke(cli.app, ["status", "--watch", "--json", "--every", "5"])
    assert lines.exit_code == 0 and waits == [5, 5, 5]
    assert [len(json.loads(line)["stages"]) for line in lines.stdout.splitlines()] == [7, 7, 7]
    waits.clear()
    logged = CliRunner().invoke(cli.app, ["status", "-w", "-n", "1"])  # not a terminal: one screen after the other
    assert logged.exit_code == 0 and waits == [1, 1, 1] and logged.stdout.count("pushpipe status at") == 3
    waits.clear()
    screen = io.StringIO()
    monkeypatch.setattr(status_view, "console", lambda: Console(file=screen, force_terminal=True, width=200))
    live = CliRunner().invoke(cli.app, ["status", "--watch"])  # a terminal: rich.live redraws in place
    assert live.exit_code == 0 and waits == [2, 2, 2] and "Firing alerts" in screen.getvalue()
    assert screen.getvalue().count("pushpipe status at") >= 3 and "\x1b[" in screen.getvalue()


def test_sql_prints_the_rows_with_their_brackets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pushpipe.sinks import clickhouse

    class Rows:
        def rows(self, query: str) -> list[dict[str, object]]:
            return [{"vendor": "hms", "reason": "[bold]80300007[/bold]", "query": query}]

    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.setattr(clickhouse, "connect", lambda settings, create: Rows())
    result = CliRunner().invoke(cli.app, ["sql", "SELECT 1"])
    assert result.exit_code == 0 and "[bold]80300007[/bold]" in result.stdout and "SELECT 1" in result.stdout


def test_sql_prints_a_formatted_answer_as_clickhouse_wrote_it_and_an_error_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                                        tmp_path: Path) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from pushpipe.sinks import clickhouse

    class Answers:
        def text(self, query: str) -> str:
            return f"Row 1:\n──────\nquery: {query}\n"

        def rows(self, query: str) -> list[dict[str, object]]:
            raise DatabaseError("HTTPDriver for http://default:s3cret@127.0.0.1:18123 received ClickHouse error code 62\n"
                                " Code: 62. DB::Exception: Syntax error")

    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.setattr(clickhouse, "connect", lambda settings, create: Answers())
    vertical = CliRunner().invoke(cli.app, ["sql", "SELECT 1 AS one format Vertical;"])
    assert vertical.exit_code == 0 and vertical.stdout.startswith("Row 1:") and "format Vertical" in vertical.stdout
    bad = CliRunner().invoke(cli.app, ["sql", "SELEKT 1"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "s3cret" not in bad.output
    assert bad.stderr.strip() == "pushpipe sql: Code: 62. DB::Exception: Syntax error"


def commands() -> list[tuple[str, Any]]:
    group = typer.main.get_command(cli.app)
    return sorted(group.commands.items())  # type: ignore[attr-defined]


def test_every_command_and_option_has_help_text() -> None:
    assert [name for name, _ in commands()] == ["app", "demo", "diagnose", "down", "receipts-setup", "report", "schemas", "sql", "status",
                                                "test-push", "up", "upgrade"]
    groups = {"app": ["create", "list", "rotate-secret"], "schemas": ["register"]}
    subcommands = [(f"{group} {name}", command) for group in groups
                   for name, command in sorted(dict(commands())[group].commands.items())]
    assert [name for name, _ in subcommands] == [f"{group} {name}" for group, names in groups.items() for name in names]
    for name, command in commands() + subcommands:
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}"


@pytest.mark.parametrize("argv", [[]] + [[name] for name, _ in commands()] + [["schemas", "register"]])
def test_help_of_every_command(argv: list[str]) -> None:
    result = CliRunner().invoke(cli.app, [*argv, "--help"], prog_name="pushpipe")
    assert result.exit_code == 0 and f"Usage: pushpipe {' '.join(argv)}".strip() in result.stdout


def test_main_returns_on_success_and_exits_on_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["status", "--help"])
    assert "--watch" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["status", "--every", "0"])
    assert bad.value.code == 2

