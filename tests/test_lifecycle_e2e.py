"""The lifecycle of every push through the real stack: a population of devices (by vendor and brand) gets a
campaign; ClickHouse's lifecycle rows, rollups and device statistics answer the analyst guide's questions
(docs/analysts.md, run as written) with the counts the population was set to produce; Elasticsearch's
deliveries carry each state's time; a killed analytics job counts nothing twice in the rollups."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

import stories
from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.demo import demo_token
from pushpipe.infra import process
from pushpipe.infra.jobs import FlinkJob
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.simulators import population
from pushpipe.simulators.common import SimConfig
from pushpipe.sinks import clickhouse, receipt_states
from test_isolation_e2e import registered, sent
from test_receipts_e2e import sdk_post

pytestmark = pytest.mark.stack
GUIDE = Path(__file__).resolve().parent.parent / "docs" / "analysts.md"
# vendor -> (brand, devices, population settings)
CROWD = {
    "xiaomi": ("xiaomi", 12, {"delivery_rate": 0.6, "open_rate": 0.5, "delivery_delay_ms": 300, "open_delay_ms": 200}),
    "hms": ("huawei", 6, {"delivery_rate": 1.0, "open_rate": 0.5, "delivery_delay_ms": 900, "open_delay_ms": 200}),
    "apns": ("apple", 6, {"delivery_rate": 1.0, "open_rate": 0.5, "delivery_delay_ms": 100, "open_delay_ms": 200}),
}


def guide_queries() -> dict[str, str]:
    """The analyst guide's SQL blocks by name."""
    return dict(re.findall(r"```sql ([\w-]+)\n(.*?)```", GUIDE.read_text(), re.DOTALL))


def rows(settings: Settings, sql: str) -> list[dict]:
    """The rows of a query written for the database `pushpipe`, asked of the run's database."""
    ch = clickhouse.connect(settings, create=False)
    try:
        return ch.rows(sql.replace("pushpipe.", f"{settings.clickhouse_database}."))
    finally:
        ch.close()


def ask(settings: Settings, name: str, app: str, pin: str = "u1") -> list[dict]:
    """A guide query as written, for this test's app (and pin), with yesterday read as today (the run is today)."""
    sql = guide_queries()[name].replace("'shop'", f"'{app}'").replace("'u1'", f"'{pin}'").replace("yesterday()", "today()")
    return rows(settings, sql)


def states(settings: Settings, app: str) -> dict[str, int]:
    found = rows(settings, f"SELECT state, sum(n) AS n FROM pushpipe.lifecycle_events WHERE app_id = '{app}' GROUP BY state")
    return {r["state"]: int(r["n"]) for r in found}


def rollup_sums(settings: Settings, app: str) -> dict[str, int]:
    columns = ("accepted", "delivered", "opened", "clicked")
    (row,) = rows(settings, f"SELECT {', '.join(f'sum({c}) AS {c}' for c in columns)} FROM pushpipe.rollup_minute "
                            f"WHERE app_id = '{app}'")
    return {c: int(row[c]) for c in columns}


def test_a_campaigns_lifecycle_answers_the_analysts_questions_exactly(pipeline: Settings, producer: PushProducer, admin,
                                                                      run_id: str) -> None:
    app, campaign = f"life-{run_id}", f"spring-{run_id}"
    devices = {vendor: [demo_token(vendor, run_id, n) for n in range(count)] for vendor, (_, count, _) in CROWD.items()}
    pins = {token: f"u-{vendor}{n}" for vendor, tokens in devices.items() for n, token in enumerate(tokens)}
    registered(producer, pipeline, *[
        device_event(app, pins[token], token, vendor=vendor, brand=CROWD[vendor][0], model=f"{vendor}-m1", os_version="14",
                     app_version="5.2.0") for vendor, tokens in devices.items() for token in tokens])
    admin.register_devices({token: {"app_id": app, "brand": CROWD[vendor][0]} for vendor, tokens in devices.items()
                            for token in tokens})
    for vendor, (_, _, settings) in CROWD.items():
        admin.configure(vendor=vendor, **settings)
    try:
        push = push_request(app, list(pins.values()), "Spring sale", "Today only", category="transactional",
                            campaign=campaign)
        sent(producer, push)
        fates = {vendor: [population.fate(SimConfig(**settings), push["msg_id"], token, brand)  # type: ignore[arg-type]
                          for token in devices[vendor]] for vendor, (brand, _, settings) in CROWD.items()}
        delivered = {vendor: sum(f.delivered for f in fs) for vendor, fs in fates.items()}
        opened = sum(f.opened for fs in fates.values() for f in fs)
        assert 0 < delivered["xiaomi"] < len(devices["xiaomi"]) and opened > 0
        expected = {"accepted": len(pins), "delivered": sum(delivered.values()), "opened": opened}
        observe.wait_for(lambda: {s: states(pipeline, app).get(s, 0) for s in expected} == expected, 120,
                         f"the campaign's lifecycle {expected}")
    finally:
        admin.reset(records=False)

    by_vendor = {r["vendor"]: (int(r["accepted"]), int(r["delivered"])) for r in ask(pipeline, "delivery-rate-by-vendor-per-hour", app)}
    assert by_vendor == {v: (len(devices[v]), delivered[v]) for v in CROWD}
    (by_campaign,) = ask(pipeline, "open-rate-by-campaign", app)
    assert (by_campaign["campaign"], by_campaign["delivered"], by_campaign["opened"]) == (campaign, expected["delivered"], opened)
    p99 = {r["brand"]: r["p99_ms"] for r in ask(pipeline, "p99-accepted-to-delivered-by-brand", app)}
    # the delays the population was given: 300 ms, 900 ms (a t-digest estimate of latencies that the simulator
    # counts from before its answer reaches dispatch, so a little under them)
    assert 150 <= p99["xiaomi"] < p99["huawei"] < 6_000 and p99["huawei"] >= 450, p99
    codes = {(r["vendor"], r["state"]): int(r["receipts"]) for r in ask(pipeline, "top-receipt-codes", app)}
    assert codes[("xiaomi", "delivered")] == delivered["xiaomi"] and codes[("apns", "delivered")] == delivered["apns"]
    assert {r["brand"]: int(r["devices"]) for r in ask(pipeline, "devices-by-brand", app)} == {
        brand: count for brand, count, _ in CROWD.values()}
    xiaomi_pin = pins[devices["xiaomi"][0]]
    steps = [r["state"] for r in ask(pipeline, "pin-story", app, pin=xiaomi_pin)]
    first = fates["xiaomi"][0]
    assert steps == ["accepted", *(["delivered"] if first.delivered else []), *(["opened"] if first.opened else []),
                     *(["clicked"] if first.clicked else [])]

    pin_deliveries = stories.of_pin(pipeline, app, xiaomi_pin)  # accepted: from ClickHouse, with its batch's times
    assert [d["outcome"] for d in pin_deliveries] == ["accepted"] and pin_deliveries[0]["requested_at"] > 0
    first_push = pin_deliveries[0]
    assert 0 < first_push["taken_at"] <= first_push["batched_at"] <= first_push["sent_at"] <= first_push["completed_at"]
    (story,) = receipt_states.with_receipts(clickhouse.connect(pipeline, create=False), pipeline, app, pin_deliveries)
    assert ("delivered_at" in story) == first.delivered and ("opened_at" in story) == first.opened

    before = rollup_sums(pipeline, app)
    assert before == {**{k: expected[k] for k in ("accepted", "delivered", "opened")}, "clicked": before["clicked"]}
    leader = process.read_pid(pipeline, "job-analytics")
    os.kill(leader, signal.SIGKILL)
    observe.wait_for(lambda: process.read_pid(pipeline, "job-analytics") not in (None, leader)
                     and FlinkJob("analytics").health(pipeline).ok, 120, "the analytics job back")
    dismissed = {"msg_id": push["msg_id"], "token": devices["hms"][0], "kind": "dismissed", "ts": push["created_at"] + 5_000}
    assert sdk_post(pipeline, app, [dismissed]).status_code == 200
    observe.wait_for(lambda: states(pipeline, app).get("dismissed") == 1, 120, "a receipt after the restart")
    assert rollup_sums(pipeline, app) == before, "the replay after the restart counted nothing twice"
