"""Stream health through the real stack: Prometheus (started by `pushpipe up`) scrapes every stage, and a vendor
outage raises the vendor-failure alert, which Alertmanager posts to the example webhook receiver, and which
resolves once the vendor is back."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest

from pushpipe import observe
from pushpipe.config import JOBS, Settings
from pushpipe.demo import demo_token
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from test_isolation_e2e import registered, sent

pytestmark = pytest.mark.stack


def query(settings: Settings, promql: str) -> list[dict]:
    answer = httpx.get(f"{settings.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def firing(settings: Settings, name: str) -> list[dict]:
    alerts = httpx.get(f"{settings.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


@pytest.fixture
def webhook(pipeline: Settings) -> Iterator[list[dict]]:
    """The example receiver: what Alertmanager posts to alert_webhook_url."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    where = urlsplit(pipeline.alert_webhook_url)
    server = ThreadingHTTPServer((where.hostname or "127.0.0.1", where.port or 19194), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received
    server.shutdown()
    server.server_close()


def test_prometheus_scrapes_every_stage(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    app = f"health-{run_id}"
    registered(producer, pipeline, device_event(app, "u", demo_token("hms", run_id, 0), vendor="hms"))
    sent(producer, push_request(app, ["u"], "t", "b"))  # dispatch serves /metrics from its first batch

    def targets() -> dict[str, str]:
        found = httpx.get(f"{pipeline.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return {t["scrapeUrl"]: t["health"] for t in found}

    # pushgateway, dispatch, the receipt gateway, the send API
    observe.wait_for(lambda: set(targets().values()) == {"up"} and len(targets()) == 4, 90, "every target up")
    jobs = {r["metric"]["job_name"] for r in query(pipeline, "flink_jobmanager_job_uptime")}
    assert jobs == set(JOBS), "Flink's own metrics from every job"
    operators = {r["metric"]["operator_name"] for r in query(pipeline, "flink_taskmanager_job_task_operator_numRecordsIn")}
    for stage in ("intake", "pin_directory", "shard_directory", "message_totals"):  # as Flink spells them, chained or not
        assert any(name.startswith(stage) for name in operators), (stage, operators)
    observe.wait_for(lambda: query(pipeline, 'pushpipe_dispatch_tokens_total{vendor="hms"}'), 60, "dispatch counters")
    assert query(pipeline, "pushpipe_credential_expiry_timestamp_seconds"), "the TLS trust files' expiry"
    observe.wait_for(lambda: query(pipeline, 'pushpipe_credential_expiry_timestamp_seconds{vendor="hms",credential="access token"} > time()'),
                     60, "the expiry of the access token dispatch fetched to send")
    for business in ("pushpipe_requests_in", "pushpipe_tokens"):  # the operators' own counters, through Flink's reporter
        observe.wait_for(lambda: query(pipeline, f'{{__name__=~".*{business}"}}'), 60, f"the {business} counter")
    assert query(pipeline, 'up{job="gateway"} == 1') and query(pipeline, 'up{job="ingress"} == 1')


def test_the_supervisor_pushes_kafka_lag_and_the_oldest_request_age(pipeline: Settings, producer: PushProducer, run_id: str) -> None:
    """infra/lag.py through the Pushgateway: every partition each job reads, with its labels; a request's age back to 0 once read."""
    from pushpipe.infra import lag

    sent(producer, push_request(f"lag-{run_id}", ["u"], "t", "b"))

    def series(metric: str) -> list[dict[str, str]]:
        return [r["metric"] for r in query(pipeline, f'{metric}{{job="pushpipe-lag"}}')]

    observe.wait_for(lambda: {m["job_name"] for m in series(lag.LAG)} == set(JOBS), 60, "the lag of every job")
    partitions = {str(n) for n in range(pipeline.kafka_partitions)}
    for job, topics in lag.sources(pipeline.topics).items():
        rows = [m for m in series(lag.LAG) if m["job_name"] == job]
        assert {m["group"] for m in rows} == {f"pushpipe-{job}"}
        assert {(m["topic"], m["partition"]) for m in rows} == {(t, n) for t in topics for n in partitions}, job
        assert {m["topic"] for m in series(lag.AGE) if m["job_name"] == job} == set(topics), job
    requests = f'{lag.AGE}{{job="pushpipe-lag", job_name="fanout", topic="{pipeline.topics.requests}"}}'
    observe.wait_for(lambda: [r for r in query(pipeline, requests) if float(r["value"][1]) == 0], 90,
                     "the oldest request's age back to 0 once fanout has read and committed")
    assert not [a for a in firing(pipeline, "JobDown") if a["labels"].get("job") == "pushpipe-lag"]


def test_a_vendor_outage_fires_the_failure_alert_and_it_resolves(pipeline: Settings, producer: PushProducer, admin: SimulatorAdmin,
                                                                 webhook: list[dict], run_id: str) -> None:
    app = f"alert-{run_id}"
    registered(producer, pipeline, *[device_event(app, f"u{i}", demo_token("honor", run_id, i), vendor="honor") for i in range(20)])
    stop = threading.Event()

    def traffic() -> None:  # a steady trickle of pushes to Honor devices
        while not stop.is_set():
            sent(producer, *[push_request(app, [f"u{i}"], "t", "b", category="transactional") for i in range(20)])
            time.sleep(1)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        time.sleep(10)
        admin.configure(vendor="honor", outage=True)
        started = time.monotonic()
        observe.wait_for(lambda: firing(pipeline, "VendorFailureRateHigh"), 120, "the vendor-failure alert")
        fired = time.monotonic() - started
        observe.wait_for(lambda: any(a["labels"]["alertname"] == "VendorFailureRateHigh" and a["status"] == "firing"
                                     for post in webhook for a in post["alerts"]), 60, "Alertmanager's post to the webhook")
        posted = time.monotonic() - started
        admin.configure(vendor="honor", outage=False)
        back = time.monotonic()
        observe.wait_for(lambda: any(a["labels"]["alertname"] == "VendorFailureRateHigh" and a["status"] == "resolved"
                                     for post in webhook for a in post["alerts"]), 300, "the alert resolved")
        resolved = time.monotonic() - back
    finally:
        stop.set()
        admin.configure(vendor="honor", outage=False)
    print(f"\nHonor outage: the alert fired in Prometheus {fired:.0f} s after it began, reached the webhook after {posted:.0f} s,"
          f" and resolved {resolved:.0f} s after the vendor was back")
    assert fired <= 60, "firing within 60 s of the outage"


def test_every_dashboard_query_returns_data(pipeline: Settings) -> None:
    """After the traffic above: each PromQL query of infra/dashboards/*.json answers with at least one series."""
    from pathlib import Path

    from pushpipe.infra import prometheus

    exprs = [target["expr"] for path in sorted((Path(prometheus.__file__).parent / "dashboards").glob("*.json"))
             for panel in json.loads(path.read_text())["panels"] for target in panel["targets"]]
    assert len(exprs) >= 14
    empty = [e for e in exprs if not query(pipeline, e)]
    assert empty == [], f"dashboard queries without data: {empty}"
