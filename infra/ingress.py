"""The HTTP send and device API (`python -m pushpipe.ingress`) as a managed background service.

run_dir/ingress/ holds ingress.pid and ingress.log. It reads the app registry from the compacted `apps` topic, so
the topics are made (idempotent) before it starts: `up` starts the services first and makes the topics after them.
Healthy once it answers /health with the registry read.
"""
from __future__ import annotations

from typing import Any

from pushpipe.config import Settings
from pushpipe.infra.kafka import ensure_topics
from pushpipe.infra.pyservice import PythonService
from pushpipe.infra.service import Health


class Ingress(PythonService):
    name, process_name, module, what = "send-api", "ingress", "pushpipe.ingress", "send API"
    start_timeout_s = 60.0

    def address(self, settings: Settings) -> str:
        return settings.api_url

    def prepare(self, settings: Settings) -> None:
        ensure_topics(settings)

    def health_detail(self, answer: dict[str, Any]) -> Health:
        return Health(True, f"{answer.get('apps', 0)} app(s)") if answer.get("ok") else Health(False, "reading the app registry")
