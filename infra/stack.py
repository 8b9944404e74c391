"""The whole local stack in start order: services first, then the three Flink jobs, then the
supervisor that restarts any of them that dies or hangs (infra/supervisor.py)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pushpipe.config import Settings, masked_url
from pushpipe.infra import flinkcluster, restarts
from pushpipe.infra.clusterjobs import SubmitFailed
from pushpipe.infra.components import cluster_mode, flink_cluster, flink_jobs, services
from pushpipe.infra.kafka import ensure_topics
from pushpipe.infra.process import ServiceFailed
from pushpipe.infra.service import Health, Service
from pushpipe.infra.supervisor import Supervisor
from pushpipe.jobs import dispatch_policy
from pushpipe.jobs.policy import policyfile


def components(settings: Settings, with_jobs: bool = True) -> list[Service]:
    """Everything `up` starts, in order; the supervisor last, so `down` stops it first (and the jobs before the cluster)."""
    return services() + flink_cluster(settings) + (flink_jobs(settings) if with_jobs else []) + [Supervisor()]


def say(message: str) -> None:
    print(f"[pushpipe] {message}", file=sys.stderr, flush=True)


def up(settings: Settings, with_jobs: bool = True) -> list[str]:
    """Install and start everything (idempotent: healthy components are left as they are).

    Returns what is not healthy at the end ("name: why"), empty when the whole stack is up.
    The supervisor is stopped meanwhile, so that nothing is started twice, and started last.
    """
    started = time.monotonic()
    policyfile.policy_config(settings)  # a bad policy file stops here, naming what is wrong, not in a job
    Supervisor().stop(settings)
    for component in services():
        say(f"{component.name}: install")
        component.install(settings)
    for component in services():
        say(f"{component.name}: start")
        component.start(settings)
    ensure_topics(settings)
    dispatch_policy.write_embedded(settings.dispatch_file)
    write_example_templates(settings.templates_file)
    if cluster_mode(settings):
        start_cluster(settings)
    if with_jobs:
        start_jobs(settings)
    Supervisor().start(settings)
    down_now = not_up([(c.name, c.health(settings)) for c in components(settings, with_jobs)])
    if down_now:
        say(f"stack NOT up after {time.monotonic() - started:.1f}s: " + "; ".join(down_now))
    else:
        say(f"stack up in {time.monotonic() - started:.1f}s")
    return down_now


def not_up(healths: list[tuple[str, Health]]) -> list[str]:
    """"name: why" for each component that is not healthy."""
    return [f"{name}: {health.detail or 'DOWN'}" for name, health in healths if not health.ok]


EXAMPLE_TEMPLATES = {"templates": {"order_shipped": {"default_locale": "en", "variants": {
    "en": {"title": "Order {order} shipped", "body": "Arriving {day}"},
    "de": {"title": "Bestellung {order} versandt", "body": "Ankunft {day}"},
    "zh-CN": {"title": "订单 {order} 已发货", "body": "预计 {day} 送达"}}}}}


def write_example_templates(path: Path) -> None:
    """The embedded stack's templates file (fan-out reads it at start), unless one exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(EXAMPLE_TEMPLATES, ensure_ascii=False, indent=2) + "\n")


def start_cluster(settings: Settings) -> None:
    """The Flink standalone cluster (cluster mode): its configuration, then its processes."""
    began = time.monotonic()
    say("flink cluster: install")
    flinkcluster.JobManager().install(settings)
    say("flink cluster: start")
    flinkcluster.start(settings)
    say(f"flink cluster: JobManager and {flinkcluster.TASKMANAGERS} TaskManagers up in {time.monotonic() - began:.1f}s")


def start_jobs(settings: Settings) -> None:
    """Launch the jobs side by side (embedded, each takes ~10 s to come up; on the cluster, each `flink run` in turn), then
    wait for all of them."""
    jobs = flink_jobs(settings)
    for job in jobs:
        job.install(settings)
        say(f"{job.name}: start")
        try:
            job.launch(settings)
        except SubmitFailed as failed:  # up names it at the end
            say(f"{job.name}: {failed}")
    for job in jobs:
        try:
            job.wait_ready(settings)
        except ServiceFailed as failed:  # up names it at the end; the supervisor will retry one of its own processes
            say(str(failed))


def down(settings: Settings) -> None:
    for component in reversed(components(settings)):
        say(f"{component.name}: stop")
        component.stop(settings)


STATUS_HEADER = ("component", "version", "address", "health", "restarts")


@dataclass(frozen=True)
class ComponentStatus:
    """One component's line in `pushpipe status` (passwords in URLs masked)."""
    name: str
    version: str
    address: str
    ok: bool
    detail: str
    restarts: int
    last_restart: str  # "11:32:05: Python worker gone for 10s", or ""

    def row(self) -> tuple[str, str, str, str, str]:
        state = ("up" if self.ok else "DOWN") + (f" ({self.detail})" if self.detail else "")
        return (self.name, self.version, self.address, state, f"{self.restarts} (last {self.last_restart})" if self.last_restart else "0")


def component_statuses(settings: Settings) -> list[ComponentStatus]:
    counts = restarts.load(settings)
    statuses = []
    for component in components(settings):
        health = component.health(settings)
        record = counts.get(component.name)
        statuses.append(ComponentStatus(component.name, component.version, masked_url(component.address(settings)), health.ok,
                                        masked_url(health.detail), int((record or {}).get("count", 0)), restarts.last(record)))
    return statuses


def status_rows(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    return [status.row() for status in component_statuses(settings)]


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])
