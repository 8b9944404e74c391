"""The web console (`python -m pushpipe.console`) as a managed background service.

run_dir/console/ holds console.pid and console.log. Chart.js, which its pages draw with, is downloaded from the npm
registry into the cache on install (infra/chartjs.py); the console serves it from there.
"""
from __future__ import annotations

import sys

import httpx

from pushpipe.config import Settings
from pushpipe.infra import chartjs, process
from pushpipe.infra.service import Health

NAME = "console"
START_TIMEOUT_S = 30.0


class Console:
    name = "web-console"
    process_name = NAME
    version = "0.1.0"

    def address(self, settings: Settings) -> str:
        return settings.console_url

    def install(self, settings: Settings) -> None:
        chartjs.install(settings)

    def start(self, settings: Settings) -> None:
        chartjs.install(settings)  # nothing to do once installed
        if process.needs_start(settings, NAME, lambda: self.health(settings).ok):
            process.start(settings, NAME, [sys.executable, "-m", "pushpipe.console"])
            process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "web console", settings=settings, name=NAME)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME, timeout=10)

    def health(self, settings: Settings) -> Health:
        try:
            ok = httpx.get(f"{settings.console_url}/health", timeout=2).json().get("ok")
        except (httpx.HTTPError, ValueError):
            return Health(False, "not answering")
        return Health(bool(ok), "answering")
