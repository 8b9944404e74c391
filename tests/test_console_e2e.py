"""The web console and the weekly report after a real run through the whole stack, in Debian's Chromium: an app's
HMS devices (opened, all of them) and Xiaomi devices (none opened) get a push, a user with quiet hours all day a
marketing push; the overview's charts hold the run's rates as ClickHouse counts them, the diagnosis page finds the
user and explains the suppressed push, and the report's PNG draws the figures ClickHouse holds."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser

from browser import browser, watched  # noqa: F401 (browser: a fixture)
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.demo import demo_token
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, preference_event, push_request
from pushpipe.sinks import clickhouse
from pushpipe.support import report
from test_isolation_e2e import registered, sent

pytestmark = pytest.mark.stack
DEVICES = {"hms": ("huawei", 4), "xiaomi": ("xiaomi", 3)}


def lifecycle_counts(settings: Settings, app: str) -> dict[str, int]:
    ch = clickhouse.connect(settings, create=False)
    try:
        found = ch.rows(f"SELECT vendor, state, sum(n) AS n FROM {settings.clickhouse_database}.lifecycle_events "
                        "WHERE app_id = {app:String} GROUP BY vendor, state", parameters={"app": app})
    finally:
        ch.close()
    return {f"{r['vendor']}:{r['state']}": int(r["n"]) for r in found}


@pytest.fixture(scope="module")
def run(pipeline: Settings) -> Iterator[str]:
    """The app of a finished run: every push counted in ClickHouse, delivered and opened as the population was set."""
    app = f"console-{uuid.uuid4().hex[:8]}"
    admin = SimulatorAdmin(pipeline.simulator_admin_url)
    tokens = {vendor: [demo_token(vendor, app[-8:], n) for n in range(count)] for vendor, (_, count) in DEVICES.items()}
    producer = PushProducer(pipeline)
    pins = {token: f"u-{vendor}{n}" for vendor, ts in tokens.items() for n, token in enumerate(ts)}
    registered(producer, pipeline, *[device_event(app, pins[token], token, vendor=vendor, brand=DEVICES[vendor][0])
                                     for vendor, ts in tokens.items() for token in ts],
               device_event(app, "carol", demo_token("hms", app[-8:], 99), vendor="hms", brand="huawei", timezone="Europe/Berlin"))
    producer.preference(preference_event(app, "carol", "set_quiet_hours", quiet_start="00:00", quiet_end="23:59"))
    producer.flush()
    observe.wait_fanout_read(pipeline, pipeline.topics.preferences)
    admin.configure(vendor="hms", open_rate=1.0, open_delay_ms=0)
    try:
        listed = [*pins.values(), *list(pins.values())[:2]]  # two pins twice: each still gets one push
        sent(producer, push_request(app, listed, "Hello", "Everyone", category="transactional"),
             push_request(app, ["carol"], "Sale", "Today only", category="marketing", ttl_s=120))
        expected = {"hms:accepted": 4, "hms:delivered": 4, "hms:opened": 4, "xiaomi:accepted": 3, "xiaomi:delivered": 3,
                    "none:suppressed": 1}
        observe.wait_for(lambda: lifecycle_counts(pipeline, app) == expected, 120, f"the run's lifecycle {expected}")
    finally:
        admin.reset(records=False)
    yield app


def test_the_overview_charts_the_runs_rates(pipeline: Settings, run: str, browser: Browser) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(pipeline.console_url)
        page.wait_for_selector("body[data-loads='1']", timeout=30_000)
        page.fill("#app", run)
        page.click("#filters button[type=submit]")
        page.wait_for_selector("body[data-loads='2']", timeout=30_000)
        series = "(id) => window.pushpipeCharts[id].data.datasets.map((s) => [s.label, s.data.filter((v) => v !== null)])"
        charts = {chart: page.evaluate(series, chart)
                  for chart in ("chart-delivery-vendor", "chart-open-vendor", "chart-delivery-brand", "chart-open-brand")}
        assert not errors, errors
    assert dict(charts["chart-delivery-vendor"]) == {"hms": [1], "xiaomi": [1]}
    assert dict(charts["chart-open-vendor"]) == {"hms": [1], "xiaomi": [0]}
    assert dict(charts["chart-open-brand"]) == {"huawei": [1], "xiaomi": [0]}
    assert "hms" in page_text(pipeline, "/api/health")  # vendor health as the page got it


def page_text(settings: Settings, path: str) -> str:
    return httpx.get(f"{settings.console_url}{path}", timeout=30).text


def test_a_diagnosis_search_finds_the_pin_and_explains_the_suppressed_push(pipeline: Settings, run: str,
                                                                          browser: Browser) -> None:  # noqa: F811
    with watched(browser) as (page, errors):
        page.goto(f"{pipeline.console_url}/diagnose")
        page.fill("#app", run)
        page.fill("#id", "carol")
        page.click("#search-button")
        page.wait_for_selector("#verdict li", timeout=30_000)
        verdict = page.inner_text("#verdict")
        story = page.inner_text("#story")
        page.fill("#id", "nobody")
        page.click("#search-button")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        error = page.inner_text("#error")
        assert not [e for e in errors if "404" not in e], errors  # the unknown pin's 404 is the one error expected
    assert "quiet hours" in verdict and "Quiet hours (00:00-23:59 in Europe/Berlin) are on now" in verdict
    assert "carol" in story or run in story
    assert "knows no pin 'nobody'" in error


def test_the_weekly_report_draws_what_clickhouse_holds(pipeline: Settings, run: str) -> None:
    png, figures = report.week(pipeline, app_id=run)
    image = Image.open(png)
    assert image.size == (1080, 2340)
    drawn = json.loads(image.text[report.METADATA_KEY])
    assert drawn == figures.to_json()
    counts = lifecycle_counts(pipeline, run)
    total = {state: sum(n for key, n in counts.items() if key.endswith(f":{state}")) for state in ("accepted", "delivered", "opened")}
    totals = drawn["totals"]
    assert (totals["accepted"], totals["delivered"], totals["opened"]) == (total["accepted"], total["delivered"], total["opened"])
    assert totals["sent"] == total["accepted"] and totals["open_rate"] == pytest.approx(4 / 7)
    vendors = {v["vendor"]: v for v in drawn["vendors"]}
    assert vendors["hms"]["open_rate"] == 1 and vendors["xiaomi"]["open_rate"] == 0
    today = [d for d in drawn["days"] if d["date"] == dt.datetime.now(dt.UTC).date().isoformat()]
    assert today and today[0]["sent"] == total["accepted"]
    served = httpx.get(f"{pipeline.console_url}/report/week.png", params={"app": run}, timeout=60)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
