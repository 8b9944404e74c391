"""The stack's supervisor: `python -m pushpipe.infra.supervisor`, started last by `pushpipe up`, stopped first
by `pushpipe down`, shown by `pushpipe status`.

Every POLL_S it looks at each component pushpipe started (one with a pid file under run_dir: a
component stopped on purpose has none) and restarts it with the component's own code when its process
died, or when a Problem has lasted its grace: a job stuck RESTARTING, a job whose Python worker is
gone while Flink noticed nothing (infra/jobs.py), a service unhealthy for a minute. A restarted job
resumes from its latest checkpoint. Each restart is counted in run_dir/supervisor/restarts.json
(infra/restarts.py). Restarts run in threads of their own, so one slow start does not blind the rest.
A thread of its own measures the jobs' Kafka consumer lag and pushes it to the Pushgateway (infra/lag.py).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pushpipe.config import Settings, load
from pushpipe.infra import lag, process, restarts
from pushpipe.infra.components import supervised
from pushpipe.infra.service import Health, Problem, Service

NAME = "supervisor"
POLL_S = 1.0
HEARTBEAT_STALE_S = 15.0
START_TIMEOUT_S = 15.0
UNHEALTHY_GRACE_S = 60.0  # a service alive but failing its health check (Kafka, Elasticsearch, ...)
BACKOFF_S = (0.0, 5.0, 15.0, 60.0)  # before the next attempt, after 0, 1, 2, 3+ failed restarts


def process_name(component: Service) -> str:
    return getattr(component, "process_name", component.name)


def heartbeat_file(settings: Settings) -> Path:
    return process.service_dir(settings, NAME) / "heartbeat"


class Supervisor:
    """The supervisor as a component of the stack."""

    name = NAME
    version = "-"

    def address(self, settings: Settings) -> str:
        return str(restarts.path(settings))

    def install(self, settings: Settings) -> None:
        """Part of this package: nothing to download."""

    def start(self, settings: Settings) -> None:
        if self.health(settings).ok:
            return
        self.stop(settings)
        heartbeat_file(settings).unlink(missing_ok=True)
        process.start(settings, NAME, [sys.executable, "-m", "pushpipe.infra.supervisor"])
        process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "supervisor", settings=settings, name=NAME)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME, timeout=10)

    def health(self, settings: Settings) -> Health:
        if not process.is_running(settings, NAME):
            return Health(False, "not running")
        try:
            age = time.time() - heartbeat_file(settings).stat().st_mtime
        except OSError:
            return Health(False, "starting")
        return Health(age < HEARTBEAT_STALE_S, f"polls every {POLL_S:.0f}s" if age < HEARTBEAT_STALE_S else f"no heartbeat for {age:.0f}s")


@dataclass
class Watch:
    """What the supervisor remembers of one component between polls."""
    kind: str | None = None  # the kind of problem seen at the last poll
    since: float = 0.0  # when that kind of problem was first seen
    restarting: threading.Thread | None = None
    failures: int = 0  # restarts in a row that did not bring it up
    not_before: float = 0.0


def problem(component: Service, settings: Settings) -> Problem | None:
    """Why component needs a restart now (before its grace), or None."""
    pid = process.read_pid(settings, process_name(component))
    if pid is None:
        return None  # not started by pushpipe, or stopped on purpose
    if not process.alive(pid):
        return Problem("died", "process died", 0.0)
    check = getattr(component, "problem", None)
    if check is not None:
        return check(settings)
    health = component.health(settings)
    return None if health.ok else Problem("unhealthy", f"unhealthy: {health.detail}", UNHEALTHY_GRACE_S)


def due(watch: Watch, found: Problem | None, now: float) -> bool:
    """Track found in watch; True once a problem of one kind has lasted its grace."""
    if found is None:
        watch.kind = None
        return False
    if found.kind != watch.kind:
        watch.kind, watch.since = found.kind, now
    return now - watch.since >= found.grace_s and now >= watch.not_before


def restart(component: Service, settings: Settings, reason: str, watch: Watch) -> None:
    """Restart with the component's own code (restart(), or stop() then start()), counted."""
    entry = restarts.record(settings, component.name, reason)
    say(f"{component.name}: restart #{entry['count']}: {reason}")
    began = time.monotonic()
    try:
        custom = getattr(component, "restart", None)
        if custom is not None:
            custom(settings)
        else:
            component.stop(settings)
            component.start(settings)
    except Exception as err:  # a failed start is retried after a backoff, never ends the supervisor
        watch.failures += 1
        watch.not_before = time.monotonic() + BACKOFF_S[min(watch.failures, len(BACKOFF_S) - 1)]
        say(f"{component.name}: restart failed ({type(err).__name__}): {str(err).splitlines()[0] if str(err) else ''}")
        return
    watch.failures, watch.kind = 0, None
    say(f"{component.name}: back in {time.monotonic() - began:.1f}s")


def poll(components: list[Service], settings: Settings, watches: dict[str, Watch]) -> None:
    now = time.monotonic()
    for component in components:
        watch = watches.setdefault(component.name, Watch())
        if watch.restarting is not None and watch.restarting.is_alive():
            continue
        try:
            found = problem(component, settings)
        except Exception as err:  # a check that fails is a reason to look again, not to restart
            say(f"{component.name}: check failed: {err!r}")
            continue
        if due(watch, found, now):
            watch.restarting = threading.Thread(target=restart, args=(component, settings, found.reason, watch),
                                                name=f"restart-{component.name}", daemon=True)
            watch.restarting.start()


def _reap_children() -> None:
    """Collect the exit status of components this process restarted (their parent is now us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def run(settings: Settings) -> None:
    components = supervised(settings)
    watches: dict[str, Watch] = {}
    say(f"supervising {', '.join(c.name for c in components)} every {POLL_S:.0f}s")
    lag.start(settings, say)
    while True:
        _reap_children()
        poll(components, settings, watches)
        heartbeat_file(settings).touch()
        time.sleep(POLL_S)


if __name__ == "__main__":
    run(load())
