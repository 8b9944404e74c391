"""The project's own HTTP services (receipt gateway, send API, web console, schema registry simulator) as managed background
processes.

Each runs as `python -m <module>`, on the address of a setting; run_dir/<process_name>/ holds its pid and log.
Healthy once GET /health answers {"ok": true}. A subclass names itself and may prepare what it needs first
(`prepare`) and say more of its health (`health_detail`).
"""
from __future__ import annotations

import sys
from typing import Any

import httpx

from pushpipe.config import Settings
from pushpipe.infra import http, process
from pushpipe.infra.service import Health


class PythonService:
    name = ""  # as `status` shows it
    process_name = ""
    module = ""  # run as python -m <module>
    what = ""  # in a start failure's message
    version = "0.1.0"
    start_timeout_s = 30.0

    def address(self, settings: Settings) -> str:
        raise NotImplementedError

    def install(self, settings: Settings) -> None:
        """Nothing to download unless a subclass says otherwise."""

    def prepare(self, settings: Settings) -> None:
        """What must exist before the process starts (idempotent)."""

    def args(self, settings: Settings) -> list[str]:
        """The module's command-line arguments (none: it reads the settings itself)."""
        return []

    def start(self, settings: Settings) -> None:
        self.prepare(settings)
        if process.needs_start(settings, self.process_name, lambda: self.health(settings).ok):
            process.start(settings, self.process_name, [sys.executable, "-m", self.module, *self.args(settings)])
            process.wait_until(lambda: self.health(settings).ok, self.start_timeout_s, self.what, settings=settings,
                               name=self.process_name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.process_name, timeout=10)

    def health(self, settings: Settings) -> Health:
        try:
            answer = http.client().get(f"{self.address(settings)}/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return Health(False, "not answering")
        return self.health_detail(answer)

    def health_detail(self, answer: dict[str, Any]) -> Health:
        return Health(bool(answer.get("ok")), "answering")
