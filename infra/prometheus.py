"""Prometheus and Alertmanager (Debian's `prometheus` and `prometheus-alertmanager`) as managed services.

Prometheus scrapes every stage: each Flink job's own metrics (pushed to the Pushgateway by Flink's Prometheus
reporter: operators' records in and out, backpressure, checkpoints, restarts, the Kafka sources' lag), the Kafka lag that the
supervisor measures and pushes there too (infra/lag.py), the dispatch worker's and the receipt gateway's /metrics, and evaluates
infra/alerting/rules.yml; Alertmanager routes what fires to the example webhook receiver of infra/alerting/alertmanager.yml.
run_dir/prometheus and run_dir/alertmanager hold their generated config, data and logs.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pushpipe.config import Settings
from pushpipe.infra import flinkcluster, http, process
from pushpipe.infra.service import Health

ALERTING = Path(__file__).parent / "alerting"
RULES = ALERTING / "rules.yml"
SCRAPE_INTERVAL_S = 5  # short, so alerts in tests fire within their minute
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager prometheus-pushgateway (make setup does)"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def scrape_config(settings: Settings) -> dict[str, Any]:
    """prometheus.yml: every stage's metrics, the alert rules, and Alertmanager."""
    # embedded, dispatch's subtasks share the JVM's Python (thread mode) and its one /metrics; on the cluster each
    # subtask's Python worker serves its own, at the port + its index
    subtasks = settings.dispatch_parallelism if settings.flink_mode == "cluster" else 1
    dispatch = [f"127.0.0.1:{settings.dispatch_metrics_port + n}" for n in range(subtasks)]
    interval = f"{SCRAPE_INTERVAL_S}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(RULES)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [_host_port(settings.alertmanager_url)]}]}]},
        "scrape_configs": [
            # each pusher's own labels kept: job="pushpipe-<job>" as Flink pushed them, job="pushpipe-lag" (infra/lag.py)
            {"job_name": "flink", "honor_labels": True, "static_configs": [{"targets": [_host_port(settings.pushgateway_url)]}]},
            {"job_name": "dispatch", "static_configs": [{"targets": dispatch}]},
            {"job_name": "gateway", "static_configs": [{"targets": [_host_port(settings.gateway_url)]}]},
            {"job_name": "ingress", "static_configs": [{"targets": [_host_port(settings.api_url)]}]},
        ] + cluster_scrape(settings),
    }


def cluster_scrape(settings: Settings) -> list[dict[str, Any]]:
    """In cluster mode, the Prometheus reporters of the JobManager and the TaskManagers (the same metric names as the
    embedded jobs push, so stream health and the alerts read them alike)."""
    if not (settings.flink_mode == "cluster" or flinkcluster.started(settings)):
        return []
    return [{"job_name": "flink-cluster", "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in flinkcluster.metrics_ports(settings)]}]}]


def _ready(url: str) -> bool:
    try:
        return http.client().get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Prometheus:
    name = "prometheus"
    version = "2.42 (Debian)"

    def address(self, settings: Settings) -> str:
        return settings.prometheus_url

    def install(self, settings: Settings) -> None:
        _binary("prometheus")

    def start(self, settings: Settings) -> None:
        import yaml

        base = process.service_dir(settings, self.name)
        (base / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(settings), sort_keys=False))
        if process.needs_start(settings, self.name, lambda: _ready(settings.prometheus_url)):
            process.start(settings, self.name, [
                _binary("prometheus"), f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address={_host_port(settings.prometheus_url)}", "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=7d"])
            process.wait_until(lambda: _ready(settings.prometheus_url), 60, "Prometheus", settings=settings, name=self.name)
        else:  # running: take the config again (targets follow the settings)
            http.client().post(f"{settings.prometheus_url}/-/reload", timeout=10)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=15)

    def health(self, settings: Settings) -> Health:
        if not _ready(settings.prometheus_url):
            return Health(False, "not ready")
        try:
            targets = http.client().get(f"{settings.prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError, KeyError):
            return Health(True, "ready")
        up = sum(1 for t in targets if t.get("health") == "up")
        return Health(True, f"{up}/{len(targets)} targets up")


class Pushgateway:
    """Where the jobs push Flink's metrics (infra runs the Debian `prometheus-pushgateway`), on loopback only."""

    name = "pushgateway"
    version = "1.5 (Debian)"

    def address(self, settings: Settings) -> str:
        return settings.pushgateway_url

    def install(self, settings: Settings) -> None:
        _binary("prometheus-pushgateway")

    def start(self, settings: Settings) -> None:
        if process.needs_start(settings, self.name, lambda: _ready(settings.pushgateway_url)):
            process.start(settings, self.name, [_binary("prometheus-pushgateway"),
                                                f"--web.listen-address={_host_port(settings.pushgateway_url)}"])
            process.wait_until(lambda: _ready(settings.pushgateway_url), 60, "Pushgateway", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=15)

    def health(self, settings: Settings) -> Health:
        return Health(True, "ready") if _ready(settings.pushgateway_url) else Health(False, "not ready")


class Alertmanager:
    name = "alertmanager"
    version = "0.25 (Debian)"

    def address(self, settings: Settings) -> str:
        return settings.alertmanager_url

    def install(self, settings: Settings) -> None:
        _binary("prometheus-alertmanager")

    def start(self, settings: Settings) -> None:
        base = process.service_dir(settings, self.name)
        config = (ALERTING / "alertmanager.yml").read_text().replace("ALERT_WEBHOOK_URL", settings.alert_webhook_url)
        (base / "alertmanager.yml").write_text(config)
        if process.needs_start(settings, self.name, lambda: _ready(settings.alertmanager_url)):
            process.start(settings, self.name, [
                _binary("prometheus-alertmanager"), f"--config.file={base / 'alertmanager.yml'}",
                f"--storage.path={base / 'data'}", f"--web.listen-address={_host_port(settings.alertmanager_url)}",
                "--cluster.listen-address="])
            process.wait_until(lambda: _ready(settings.alertmanager_url), 60, "Alertmanager", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=15)

    def health(self, settings: Settings) -> Health:
        return Health(True, "ready") if _ready(settings.alertmanager_url) else Health(False, "not ready")
