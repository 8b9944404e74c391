"""The HTTP send and device API (`python -m pushpipe.ingress`) as a managed background service.

run_dir/ingress/ holds ingress.pid and ingress.log. It reads the app registry from the compacted `apps` topic, so
the topics are made (idempotent) before it starts: `up` starts the services first and makes the topics after them.
Healthy once it answers /health with the registry read.
"""
from __future__ import annotations

import sys

import httpx

from pushpipe.config import Settings
from pushpipe.infra import process
from pushpipe.infra.kafka import ensure_topics
from pushpipe.infra.service import Health

NAME = "ingress"
START_TIMEOUT_S = 60.0


class Ingress:
    name = "send-api"
    process_name = NAME
    version = "0.1.0"

    def address(self, settings: Settings) -> str:
        return settings.api_url

    def install(self, settings: Settings) -> None:
        """Nothing to download."""

    def start(self, settings: Settings) -> None:
        if process.needs_start(settings, NAME, lambda: self.health(settings).ok):
            ensure_topics(settings)
            process.start(settings, NAME, [sys.executable, "-m", "pushpipe.ingress"])
            process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "send API", settings=settings, name=NAME)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME, timeout=10)

    def health(self, settings: Settings) -> Health:
        try:
            answer = httpx.get(f"{settings.api_url}/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return Health(False, "not answering")
        return Health(True, f"{answer.get('apps', 0)} app(s)") if answer.get("ok") else Health(False, "reading the app registry")
