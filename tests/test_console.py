"""The web console without services: every route and every error through Starlette's TestClient with fake sources;
RealSources' queries and failures against stand-ins; Chart.js's download; then the pages in a real headless Chromium
(tests/browser.py) against the app served by uvicorn: the charts' data, the health tables, a pin's verdict, an unknown
pin's error, a test push followed until done."""
from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elastic_transport
import httpx
import pytest
from playwright.sync_api import Browser, Page
from starlette.testclient import TestClient

from browser import browser, served, watched  # noqa: F401 (browser: the module's fixture)
from pushpipe.config import Settings, SettingsError, load
from pushpipe.console import health, sources
from pushpipe.console.app import create_app
from pushpipe.console.sources import RealSources, Unavailable
from pushpipe.infra import chartjs, download
from pushpipe.infra.components import services
from pushpipe.infra.console import Console
from pushpipe.stream_health import Alert, StageFigures, StreamHealth
from pushpipe.support import diagnose, testpush

H0, H1 = 1_795_986_000_000, 1_795_989_600_000  # two hours, epoch ms
ROWS = [  # (hour, vendor, brand) counts as ClickHouse's rates_hour sums them
    {"at": H0, "vendor": "hms", "brand": "huawei", "accepted": 200, "delivered": 180, "opened": 45},
    {"at": H0, "vendor": "fcm", "brand": "samsung", "accepted": 100, "delivered": 90, "opened": 30},
    {"at": H0, "vendor": "fcm", "brand": "google", "accepted": 100, "delivered": 70, "opened": 7},
    {"at": H1, "vendor": "hms", "brand": "huawei", "accepted": 100, "delivered": 50, "opened": 5},
    {"at": H1, "vendor": "fcm", "brand": "samsung", "accepted": 0, "delivered": 0, "opened": 0},
    {"at": H1, "vendor": "apns", "brand": "apple", "accepted": 50, "delivered": 40, "opened": 20},
]
VENDORS = [
    {"vendor": "fcm", "throughput": 12.5, "failure_rate": 0.01, "p99_latency_s": 0.8, "open_breakers": 0, "alerts": [],
     "credentials": [{"credential": "access token", "expires_at": H1 + 3_600_000, "expires_in_s": 3600, "short_lived": True,
                      "expiring_soon": False}]},
    {"vendor": "hms", "throughput": 3.0, "failure_rate": 0.35, "p99_latency_s": 41.0, "open_breakers": 1, "alerts": ["VendorBreakerOpen"],
     "credentials": [{"credential": "tls ca", "expires_at": H1 + 86_400_000, "expires_in_s": 86400, "short_lived": False,
                      "expiring_soon": True}]},
]
STREAM = {
    "components": [{"name": "kafka", "version": "4.1.1", "address": "127.0.0.1:19092", "ok": True, "detail": "1 broker(s)", "restarts": 0,
                    "last_restart": ""}],
    "prometheus": {"url": "http://127.0.0.1:19090", "error": None},
    "stages": [{"stage": "fanout", "vendor": None, "unit": "records/s", "throughput": 40.0, "consumer_lag": 12, "failure_rate": None,
                "p99_latency_s": None, "dead_letters_per_s": 0.0, "open_breakers": None, "firing_alerts": 0},
               {"stage": "dispatch", "vendor": None, "unit": "tokens/s", "throughput": 15.5, "consumer_lag": 20_000, "failure_rate": 0.2,
                "p99_latency_s": 2.5, "dead_letters_per_s": None, "open_breakers": 1, "firing_alerts": 1}],
    "alerts": [{"name": "VendorBreakerOpen", "severity": "page", "summary": "hms exit hms-a: circuit breaker open for a minute",
                "active_since": "2026-11-29T20:44:20.796966092Z", "stage": "dispatch", "labels": {"vendor": "hms"}}],
}
DEVICE = {"token": "tok-hms-1", "vendor": "hms", "brand": "huawei", "model": "P60", "os_version": "12", "app_version": "5.1.0",
          "environment": "production", "bound_at": H0 - 86_400_000, "token_age_s": 90_000, "state": "active", "switch": "on",
          "switch_history": [{"switch": "on", "ts": H0 - 86_400_000}], "last_receipt": {"state": "delivered", "code": "0", "ts": H0},
          "state_reason": "", "timezone": "Asia/Shanghai"}  # the last two: fields the pages do not know, shown as they come
DELIVERY = {"token": "tok-hms-1", "vendor": "hms", "outcome": "accepted", "code": "80000000", "reason": "", "requested_at": H0,
            "sent_at": H0 + 120, "completed_at": H0 + 480, "delivered_at": None, "opened_at": None, "receipt": None,
            "receipt_code": None, "why": "Accepted by HMS; no receipt yet."}
PIN_STORY = {"app_id": "shop", "pin": "user-7", "timezone": "Asia/Shanghai", "local_time": "2026-11-30T02:10:00+08:00",
             "quiet_hours": {"start": "22:00", "end": "08:00", "active_now": True},
             "preferences": {"opted_out_categories": ["marketing"], "opted_out_channels": [], "unsubscribed": False},
             "caps": [{"category": "marketing", "used": 3, "limit": 3}], "devices": [DEVICE, {**DEVICE, "token": "tok-hms-2"}],
             "pushes": [{"msg_id": "m-1", "category": "marketing", "requested_at": H0, "outcome_summary": "1 accepted",
                         "deliveries": [DELIVERY], "why": "HMS accepted it but sent no receipt yet."}],
             "verdict": ["The user opted out of marketing pushes.", "It is night in Asia/Shanghai: quiet hours hold pushes until 08:00."]}
MESSAGE_STORY = {"app_id": "shop", "msg_id": "m-1", "category": "marketing", "priority": "normal", "campaign": "winter",
                 "vendors": ["hms"], "hops": [{"name": "requested", "at": H0, "since_previous_ms": None, "sla_ms": None, "within_sla": None},
                                              {"name": "accepted", "at": H0 + 45_000, "since_previous_ms": 45_000, "sla_ms": 30_000,
                                               "within_sla": False, "median": H0 + 46_000, "last": H0 + 47_000, "count": 3}],
                 "counts": {"accepted": 1, "delivered": 0},
                 "failures": [{"state": "rejected", "code": "80300007", "reason": "bad token", "count": 2}],
                 "verdict": ["Dispatch took 45 s, over its 30 s SLA."]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class FakeSources:
    """Realistic answers; `failing` names a method that raises `failure` instead; every call is kept in `calls`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.failing: dict[str, BaseException] = {}
        self.polls = 0
        self.report = PNG

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.failing:
            raise self.failing[name]

    def overview(self, hours: int, app: str | None = None) -> dict[str, Any]:
        self._call("overview", hours, app)
        return {"hours": hours, "app_id": app, "rows": ROWS}

    def vendor_health(self) -> list[dict[str, Any]]:
        self._call("vendor_health")
        return VENDORS

    def stream_health(self) -> dict[str, Any]:
        self._call("stream_health")
        return STREAM

    def pin_story(self, app: str, pin: str) -> dict[str, Any]:
        self._call("pin_story", app, pin)
        if (app, pin) != ("shop", "user-7"):
            raise diagnose.NotFound(f"app {app} knows no pin {pin!r}: no device was ever bound to it")
        return PIN_STORY

    def message_story(self, app: str, msg: str) -> dict[str, Any]:
        self._call("message_story", app, msg)
        if (app, msg) == ("shop", "m-0"):  # hops as the brief shapes them, without median, last and count
            return {**MESSAGE_STORY, "msg_id": "m-0", "hops": [{k: v for k, v in hop.items() if k not in ("median", "last", "count")}
                                                              for hop in MESSAGE_STORY["hops"]]}
        if (app, msg) != ("shop", "m-1"):
            raise diagnose.NotFound(f"app {app} sent no message {msg!r} in the last 30 days")
        return MESSAGE_STORY

    def test_push(self, app: str, pin: str | None = None, token: str | None = None) -> dict[str, Any]:
        self._call("test_push", app, pin, token)
        self.polls = 0
        return {"app_id": app, "msg_id": "test-1", "targets": ["tok-hms-1", "tok-hms-2"] if pin else [token]}

    def test_push_progress(self, app: str, msg_id: str, targets: list[str] | None = None) -> dict[str, Any]:
        """Sent, then accepted, then delivered: done on the third look."""
        self._call("test_push_progress", app, msg_id, targets)
        self.polls += 1
        step = [{"outcome": None, "code": None, "completed_at": None}, {"outcome": "accepted"},
                {"outcome": "accepted", "delivered_at": H1 + 2_000, "receipt": "delivered"}][min(self.polls, 3) - 1]
        deliveries = [{**DELIVERY, "token": token, "requested_at": H1, "sent_at": H1 + 100, "completed_at": H1 + 300, **step}
                      for token in ("tok-hms-1", "tok-hms-2")]
        return {"msg_id": msg_id, "done": self.polls >= 3, "deliveries": deliveries}

    def week_report(self, app: str | None) -> Path:
        self._call("week_report", app)
        png = self.png_dir / "week.png"
        png.write_bytes(self.report)
        return png

    png_dir = Path("/nonexistent")


@pytest.fixture
def fake(tmp_path: Path) -> FakeSources:
    made = FakeSources()
    made.png_dir = tmp_path
    return made


@pytest.fixture
def client(fake: FakeSources, tmp_path: Path) -> TestClient:
    return TestClient(create_app(load(home=tmp_path), fake))


# --- routes and errors (TestClient) -----------------------------------------------------------------------------------

def test_pages_health_and_static_files(client: TestClient) -> None:
    for path, text in (("/", "chart-delivery-vendor"), ("/diagnose", 'id="verdict"')):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and text in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "://" not in page.text, "the pages load nothing from elsewhere"
    assert client.get("/health").json() == {"ok": True}
    assert client.get("/static/common.js").headers["content-type"].startswith("text/javascript")
    for path, status in (("/static/nothing.js", 404), ("/nowhere", 404), ("/api/nothing", 404)):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["content-type"]) == (status, "application/json"), path
        assert answer.json() == {"error": "there is nothing at this address"}
    wrong = client.post("/health")
    assert wrong.status_code == 405 and wrong.json() == {"error": "POST is not allowed here"}


def test_chart_js_comes_from_the_download_cache(client: TestClient, tmp_path: Path) -> None:
    missing = client.get("/static/chart.umd.js")
    assert missing.status_code == 404 and "pushpipe up" in missing.json()["error"]
    script = chartjs.script(load(home=tmp_path))
    script.parent.mkdir(parents=True)
    script.write_text("window.Chart = function () {};")
    served_js = client.get("/static/chart.umd.js")
    assert served_js.status_code == 200 and served_js.text == "window.Chart = function () {};"
    assert served_js.headers["content-type"].startswith("text/javascript")


def test_overview_passes_hours_and_app_and_refuses_bad_ones(client: TestClient, fake: FakeSources) -> None:
    assert client.get("/api/overview").json()["rows"] == ROWS
    assert client.get("/api/overview?hours=720&app=shop.eu-1").status_code == 200
    assert client.get("/api/overview?hours=1&app=").status_code == 200
    assert [c for c in fake.calls if c[0] == "overview"] == [("overview", 24, None), ("overview", 720, "shop.eu-1"), ("overview", 1, None)]
    for query in ("hours=0", "hours=721", "hours=x", "hours=1.5", "hours=-3", "hours=", "hours=%EF%BC%91"):  # the last: a full-width 1
        answer = client.get(f"/api/overview?{query}")
        assert answer.status_code == 400 and "hours must be a whole number from 1 to 720" in answer.json()["error"], query
    for app in ("bad app", "a|b", "-lead", "x" * 65):
        answer = client.get("/api/overview", params={"app": app})
        assert answer.status_code == 400 and answer.json()["error"].startswith("app_id "), app
    assert len(fake.calls) == 3, "nothing bad reaches the sources"


def test_health_is_vendors_and_stream(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"vendors": VENDORS, "stream": STREAM}


def test_stories_found_not_found_and_malformed(client: TestClient, fake: FakeSources) -> None:
    assert client.get("/api/pins/shop/user-7").json() == PIN_STORY
    assert client.get("/api/messages/shop/m-1").json() == MESSAGE_STORY
    client.get("/api/pins/shop/a%2Fb%20c")  # a pin may hold anything printable, a slash too
    assert fake.calls[-1] == ("pin_story", "shop", "a/b c")
    unknown = client.get("/api/pins/shop/nobody")
    assert unknown.status_code == 404 and unknown.json() == {"error": "app shop knows no pin 'nobody': no device was ever bound to it"}
    assert client.get("/api/messages/shop/m-2").status_code == 404
    calls = len(fake.calls)
    for path, words in (("/api/pins/bad%20app/user-7", "app_id"), ("/api/pins/shop/%01x", "control"), ("/api/pins/shop/%20", "pin is empty"),
                        ("/api/messages/shop/m%7C1", "msg_id"), ("/api/messages/sh%7Cop/m-1", "app_id"),
                        ("/api/test-push/shop/m%7C1", "msg_id"), ("/api/pins/shop/" + "p" * 129, "at most 128")):
        answer = client.get(path)
        assert answer.status_code == 400 and words in answer.json()["error"], path
    assert len(fake.calls) == calls


def test_test_push_takes_an_app_and_a_pin_or_a_token(client: TestClient, fake: FakeSources) -> None:
    assert client.post("/api/test-push", json={"app": "shop", "pin": "user-7"}).json() == {
        "app_id": "shop", "msg_id": "test-1", "targets": ["tok-hms-1", "tok-hms-2"]}
    assert client.post("/api/test-push", json={"app": "shop", "token": "tok-9"}).json()["targets"] == ["tok-9"]
    assert [c for c in fake.calls if c[0] == "test_push"] == [("test_push", "shop", "user-7", None), ("test_push", "shop", None, "tok-9")]
    progress = client.get("/api/test-push/shop/test-1").json()
    assert progress["msg_id"] == "test-1" and progress["done"] is False and len(progress["deliveries"]) == 2
    client.get("/api/test-push/shop/test-1?target=tok-hms-1&target=tok%2B2")
    assert fake.calls[-2:] == [("test_push_progress", "shop", "test-1", None), ("test_push_progress", "shop", "test-1", ["tok-hms-1", "tok+2"])]
    calls = len(fake.calls)
    too_many = "&".join(["target=t"] * 1001)
    for bad_targets, words in (("target=a%20b", "target 'a b' must not contain whitespace"), (too_many, "at most 1000 targets")):
        answer = client.get(f"/api/test-push/shop/test-1?{bad_targets}")
        assert answer.status_code == 400 and words in answer.json()["error"], bad_targets
    for body, words in (({"app": "shop", "pin": "u", "token": "t"}, "give one of them"), ({"app": "shop"}, "give one of them"),
                        ({"app": "bad app", "pin": "u"}, "app_id"), ({"pin": "u"}, "app_id"), ({"app": "shop", "token": "a b"}, "whitespace"),
                        ({"app": "shop", "pin": 7}, "JSON object of strings"), ([], "JSON object of strings"),
                        ({"app": "shop", "pin": "x" * 20_000}, "at most 16384")):
        answer = client.post("/api/test-push", json=body)
        assert answer.status_code == 400 and words in answer.json()["error"], body
    for content, kind in ((b"app=shop", "application/x-www-form-urlencoded"), (b"{", "application/json"),
                          (b'{"app": "shop", "pin": "user-7"}', "text/plain")):  # what another site's page could post unasked
        not_json = client.post("/api/test-push", content=content, headers={"content-type": kind})
        assert not_json.status_code == 400 and "must be JSON" in not_json.json()["error"], kind
    assert client.get("/api/test-push").status_code == 405
    assert len(fake.calls) == calls
    fake.failing["test_push"] = ValueError("app shop has no device with token 'tok-9'")
    refused = client.post("/api/test-push", json={"app": "shop", "token": "tok-9"})
    assert refused.status_code == 400 and refused.json() == {"error": "app shop has no device with token 'tok-9'"}


def test_the_weekly_report_is_a_png(client: TestClient, fake: FakeSources) -> None:
    png = client.get("/report/week.png?app=shop")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content == PNG
    assert client.get("/report/week.png").status_code == 200
    assert [c for c in fake.calls if c[0] == "week_report"] == [("week_report", "shop"), ("week_report", None)]
    assert client.get("/report/week.png?app=a%7Cb").status_code == 400


@pytest.mark.parametrize(("method", "path", "source"), [
    ("GET", "/api/overview", "overview"), ("GET", "/api/health", "vendor_health"), ("GET", "/api/health", "stream_health"),
    ("GET", "/api/pins/shop/user-7", "pin_story"), ("GET", "/api/messages/shop/m-1", "message_story"),
    ("POST", "/api/test-push", "test_push"), ("GET", "/api/test-push/shop/test-1", "test_push_progress"),
    ("GET", "/report/week.png", "week_report")])
def test_a_service_that_does_not_answer_is_a_502_naming_it_and_a_bug_is_a_500_without_its_trace(
        client: TestClient, fake: FakeSources, method: str, path: str, source: str) -> None:
    body = {"json": {"app": "shop", "pin": "user-7"}} if method == "POST" else {}
    fake.failing[source] = Unavailable("ClickHouse at http://127.0.0.1:18123 did not answer: Connection refused")
    down = client.request(method, path, **body)
    assert (down.status_code, down.json()) == (502, {"error": "ClickHouse at http://127.0.0.1:18123 did not answer: Connection refused"})
    fake.failing[source] = ConnectionRefusedError(111, "Connection refused")
    assert client.request(method, path, **body).json() == {"error": "a service the console reads did not answer (ConnectionRefusedError)"}
    fake.failing[source] = KeyError("s3cret-internal")
    bug = client.request(method, path, **body)
    assert bug.status_code == 500 and bug.json() == {"error": "the console failed (KeyError); its log has the details"}


# --- RealSources against stand-ins --------------------------------------------------------------------------------------

class FakeClickHouse:
    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, Any] | None]] = []
        self.closed = False

    def rows(self, sql: str, settings: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.asked.append((sql, parameters))
        return [{"at": H0, "vendor": "hms", "brand": "huawei", "accepted": 200, "delivered": 180, "opened": 45}]

    def close(self) -> None:
        self.closed = True


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_overview_binds_its_values_never_formats_them_in(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClickHouse()
    monkeypatch.setattr(sources.clickhouse, "connect", lambda settings, create=True: fake)
    real = RealSources(load(clickhouse_database="analytics"))
    assert real.overview(48, "shop' OR 1=1") == {"hours": 48, "app_id": "shop' OR 1=1", "rows": [ROWS[0]]}
    assert real.overview(6)["rows"] == [ROWS[0]]
    (with_app, bound), (without_app, bound_without) = fake.asked
    assert "FROM analytics.rates_hour" in with_app and "INTERVAL {hours:UInt32} HOUR AND app_id = {app:String}" in with_app
    assert "OR 1=1" not in with_app and bound == {"hours": 48, "app": "shop' OR 1=1"}
    assert "app_id" not in without_app and bound_without == {"hours": 6}
    assert fake.closed


def test_real_sources_name_the_service_that_does_not_answer_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    real = RealSources(load(clickhouse_url=f"http://default:s3cret@127.0.0.1:{port}", prometheus_url=f"http://127.0.0.1:{port}",
                            es_url=f"http://127.0.0.1:{port}"))
    with pytest.raises(Unavailable, match=f"^ClickHouse at http://default:\\*\\*\\*@127.0.0.1:{port} did not answer: ") as down:
        real.overview(24)
    assert "s3cret" not in str(down.value)
    with pytest.raises(Unavailable, match=f"Prometheus at http://127.0.0.1:{port} did not answer"):
        real.vendor_health()
    with pytest.raises(Unavailable, match=f"Prometheus at http://127.0.0.1:{port} did not answer"):
        real.stream_health()

    def es_down(settings: Settings, app: str, pin: str) -> dict[str, Any]:
        raise elastic_transport.ConnectionError("Connection refused")

    monkeypatch.setattr(diagnose, "pin_story", es_down)
    with pytest.raises(Unavailable, match=f"^Elasticsearch at http://127.0.0.1:{port} did not answer: Connection error"):
        real.pin_story("shop", "user-7")

    def unknown(settings: Settings, app: str, pin: str) -> dict[str, Any]:
        raise diagnose.NotFound("no such pin")

    monkeypatch.setattr(diagnose, "pin_story", unknown)
    with pytest.raises(diagnose.NotFound):
        real.pin_story("shop", "user-7")


def test_real_test_pushes_say_when_kafka_did_not_take_them_and_follow_their_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    def kafka_slow(settings: Settings, app: str, pin: str | None = None, token: str | None = None) -> dict[str, Any]:
        raise RuntimeError("1 records were not delivered to Kafka within 30s")

    followed: list[tuple[Any, ...]] = []
    monkeypatch.setattr(testpush, "send", kafka_slow)
    monkeypatch.setattr(testpush, "progress", lambda settings, *asked: followed.append(asked) or {"done": False})
    real = RealSources(load(kafka_bootstrap="127.0.0.1:19999"))
    with pytest.raises(Unavailable, match="^Kafka at 127.0.0.1:19999 did not take the test push: 1 records were not delivered"):
        real.test_push("shop", pin="user-7")
    real.test_push_progress("shop", "test-1", ["tok-1"])
    real.test_push_progress("shop", "test-2")
    assert followed == [("shop", "test-1", ["tok-1"]), ("shop", "test-2", None)]


def test_vendor_rows_join_dispatchs_figures_alerts_and_credentials() -> None:
    def prometheus(request: httpx.Request) -> httpx.Response:
        assert request.url.params["query"] == health.EXPIRY
        result = [{"metric": {"vendor": "hms", "credential": "tls ca"}, "value": [0, "1000864000"]},
                  {"metric": {"vendor": "fcm", "credential": "access token"}, "value": [0, "1000003600"]},
                  {"metric": {"vendor": "apns", "credential": "tls ca"}, "value": [0, "NaN"]}]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    held = health.credentials("http://prometheus.test", transport=httpx.MockTransport(prometheus))
    assert [(c.vendor, c.credential) for c in held] == [("fcm", "access token"), ("hms", "tls ca")]
    stages = [StageFigures("dispatch", unit="tokens/s", throughput=9.0), StageFigures("dispatch", vendor="hms", throughput=3.0, failure_rate=0.35,
                                                                                       p99_latency_s=41.0, open_breakers=1)]
    alert = Alert("VendorBreakerOpen", "page", "", "", "dispatch", {"vendor": "hms"})
    rows = health.vendor_rows(StreamHealth("http://prometheus.test", None, stages, [alert]), held, now_s=1_000_000_000)
    assert rows == [
        {"vendor": "fcm", "throughput": None, "failure_rate": None, "p99_latency_s": None, "open_breakers": None, "alerts": [],
         "credentials": [{"credential": "access token", "expires_at": 1_000_003_600_000, "expires_in_s": 3600, "short_lived": True,
                          "expiring_soon": False}]},
        {"vendor": "hms", "throughput": 3.0, "failure_rate": 0.35, "p99_latency_s": 41.0, "open_breakers": 1, "alerts": ["VendorBreakerOpen"],
         "credentials": [{"credential": "tls ca", "expires_at": 1_000_864_000_000, "expires_in_s": 864_000, "short_lived": False,
                          "expiring_soon": True}]}]


# --- Chart.js, the setting, the service --------------------------------------------------------------------------------

def test_a_download_is_checked_against_its_npm_integrity(tmp_path: Path) -> None:
    source = tmp_path / "package.tgz"
    source.write_bytes(b"chart.js, as the registry has it")
    right = "sha512-" + base64.b64encode(hashlib.sha512(source.read_bytes()).digest()).decode()
    wrong = "sha512-" + base64.b64encode(hashlib.sha512(b"something else").digest()).decode()
    with pytest.raises(RuntimeError, match="integrity mismatch"):
        download.fetch(source.as_uri(), tmp_path / "bad" / "package.tgz", integrity=wrong)
    assert not (tmp_path / "bad" / "package.tgz").exists()
    with pytest.raises(ValueError, match="sha512-<base64>"):
        download.fetch(source.as_uri(), tmp_path / "sha1" / "package.tgz", integrity="sha1-abc=")
    assert download.fetch(source.as_uri(), tmp_path / "good" / "package.tgz", integrity=right).read_bytes() == source.read_bytes()


def test_the_console_is_a_service_of_the_stack_on_its_own_setting(tmp_path: Path) -> None:
    [console] = [s for s in services() if s.name == "web-console"]
    assert isinstance(console, Console) and services()[-1].name == "web-console", "started last: it reads the others"
    settings = load(home=tmp_path, console_url=f"http://127.0.0.1:{closed_port()}/")
    assert console.address(settings) == settings.console_url and not settings.console_url.endswith("/")
    assert not console.health(settings).ok
    assert load().console_url == "http://127.0.0.1:18490"
    with pytest.raises(SettingsError, match="PUSHPIPE_CONSOLE_URL"):
        load(console_url="127.0.0.1:18490")


# --- the pages in Chromium ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chart_js(settings: Settings) -> Path:
    """Chart.js in the configured download cache (fetched from the npm registry the first time), as `pushpipe up` installs it."""
    return chartjs.install(settings)


@pytest.fixture
def console_url(chart_js: Path, settings: Settings, fake: FakeSources) -> Iterator[str]:
    with served(create_app(settings, fake)) as url:
        yield url


def expected_rates(dimension: str) -> dict[str, dict[str, list[float | None]]]:
    """What the charts should show, worked out here apart from the page's own code: per series, each hour's rate."""
    sums: dict[str, dict[int, list[int]]] = {}
    for row in ROWS:
        totals = sums.setdefault(row[dimension], {}).setdefault(row["at"], [0, 0, 0])
        for i, count in enumerate(("accepted", "delivered", "opened")):
            totals[i] += row[count]
    hours = sorted({row["at"] for row in ROWS})
    rates: dict[str, dict[str, list[float | None]]] = {"delivery": {}, "open": {}}
    for name, by_hour in sums.items():
        cells = [by_hour.get(at) for at in hours]
        rates["delivery"][name] = [c[1] / c[0] if c and c[0] else None for c in cells]
        rates["open"][name] = [c[2] / c[1] if c and c[1] else None for c in cells]
    return rates


def chart_data(page: Page, chart_id: str) -> dict[str, Any]:
    data: dict[str, Any] = page.evaluate(
        "id => { const c = window.pushpipeCharts[id]; return {canvas: c.canvas.id, labels: c.data.labels,"
        " datasets: c.data.datasets.map(d => ({label: d.label, data: d.data}))}; }", chart_id)
    return data


def test_the_overview_draws_the_rates_and_the_health_tables(browser: Browser, console_url: str, fake: FakeSources) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(console_url)
        page.wait_for_selector("body[data-loads='1']")  # the page's policy forbids eval: no wait_for_function
        assert sorted(page.evaluate("Object.keys(window.pushpipeCharts)")) == [
            "chart-delivery-brand", "chart-delivery-vendor", "chart-open-brand", "chart-open-vendor"]
        for dimension in ("vendor", "brand"):
            expected = expected_rates(dimension)
            for rate in ("delivery", "open"):
                drawn = chart_data(page, f"chart-{rate}-{dimension}")
                assert drawn["canvas"] == f"chart-{rate}-{dimension}" and len(drawn["labels"]) == 2
                shown = {d["label"]: d["data"] for d in drawn["datasets"]}
                assert shown.keys() == expected[rate].keys()
                for name, values in expected[rate].items():
                    assert shown[name] == [pytest.approx(v) if v is not None else None for v in values], (rate, dimension, name)
        vendors = page.inner_text("#vendor-health")
        for text in ("hms", "35.0%", "41.00 s", "VendorBreakerOpen", "tls ca", "renewed on use"):
            assert text in vendors, text
        assert page.locator("#vendor-health td.bad").count() >= 4  # hms: failure rate, p99, breaker, alert (and its CA)
        assert "20,000" in page.inner_text("#stream-health") and "15.5 tokens/s" in page.inner_text("#stream-health")
        assert "circuit breaker open for a minute" in page.inner_text("#alerts") and "kafka" in page.inner_text("#components")
        assert page.get_attribute("#report-link", "href") == "/report/week.png"
        assert page.get_attribute("a[href='/diagnose']", "href") == "/diagnose"
        assert page.is_hidden("#error")
        page.fill("#app", "shop")
        page.select_option("#hours", "168")
        page.click("#filters button")
        page.wait_for_selector("body[data-loads='2']")
        assert fake.calls.count(("overview", 168, "shop")) == 1 and page.get_attribute("#report-link", "href") == "/report/week.png?app=shop"
        assert not errors, errors


def test_the_overview_says_which_service_did_not_answer(browser: Browser, console_url: str, fake: FakeSources) -> None:  # noqa: F811
    fake.failing["vendor_health"] = Unavailable("Prometheus at http://127.0.0.1:19090 did not answer: Connection refused")
    with watched(browser) as (page, _errors):
        page.goto(console_url)
        page.wait_for_selector("body[data-loads='1']")
        assert page.is_visible("#error")
        assert "health: Prometheus at http://127.0.0.1:19090 did not answer: Connection refused" in page.inner_text("#error")
        assert len(chart_data(page, "chart-delivery-vendor")["datasets"]) == 3, "the rates still show"


def test_a_pins_story_shows_its_verdict_first_and_an_unknown_pin_the_error(browser: Browser, console_url: str) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(f"{console_url}/diagnose")
        page.fill("#app", "shop")
        page.fill("#id", "user-7")
        page.click("#search-button")
        page.wait_for_selector("#verdict li")
        verdict = page.inner_text("#verdict")
        assert all(sentence in verdict for sentence in PIN_STORY["verdict"])
        story = page.inner_text("#story")
        for text in ("tok-hms-2", "P60", "22:00–08:00 (active now)", "marketing", "HMS accepted it but sent no receipt yet.", "80000000",
                     "Accepted by HMS; no receipt yet.", "Asia/Shanghai"):
            assert text in story, text
        assert page.url.endswith("/diagnose?app=shop&pin=user-7")
        assert not errors, errors
        page.fill("#id", "nobody")
        page.click("#search-button")
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error") == "app shop knows no pin 'nobody': no device was ever bound to it"
        assert page.is_hidden("#verdict") and page.inner_text("#story") == ""


def test_a_messages_story_from_the_address(browser: Browser, console_url: str) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(f"{console_url}/diagnose?app=shop&msg=m-1")
        page.wait_for_selector("#verdict li")
        assert page.inner_text("#verdict li") == "Dispatch took 45 s, over its 30 s SLA."
        assert page.locator("#story td.bad").inner_text() == "NO"
        assert "80300007" in page.inner_text("#story") and "winter" in page.inner_text("#story")
        hops = page.inner_text("#story table")  # median and last at as times, when the story has them
        assert "median at" in hops and page.evaluate(f"pushpipe.localIso({H0 + 47_000})") in hops
        page.fill("#id", "m-0")
        page.click("#search-button")
        page.wait_for_selector("#story h2:has-text('Message m-0')")
        assert "median at" not in page.inner_text("#story table") and "within SLA" in page.inner_text("#story table")
        assert page.is_checked("input[name=kind][value=msg]")
        assert not errors, errors


def test_a_test_push_is_followed_until_done(browser: Browser, console_url: str, fake: FakeSources) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(f"{console_url}/diagnose?app=shop&pin=user-7")
        page.click("text=Send a test push to all of them")
        page.wait_for_selector("#test-push[data-state=waiting]")
        page.wait_for_selector("#test-push[data-state=done]", timeout=10_000)
        shown = page.inner_text("#test-push")
        assert "test-1 to 2 device(s): done" in shown and "tok-hms-1" in shown and "tok-hms-2" in shown and "delivered" in shown
        followed = ("test_push_progress", "shop", "test-1", ["tok-hms-1", "tok-hms-2"])  # the tokens it went to, to show who is silent
        assert fake.calls.count(followed) == 3 and ("test_push", "shop", "user-7", None) in fake.calls
        page.locator("#story tr", has_text="tok-hms-2").locator("button").click()
        page.wait_for_selector("#test-push[data-state=done]", timeout=10_000)
        assert ("test_push", "shop", None, "tok-hms-2") in fake.calls and "test-1 to 1 device(s): done" in page.inner_text("#test-push")
        assert not errors, errors
