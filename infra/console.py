"""The web console (`python -m pushpipe.console`) as a managed background service.

run_dir/console/ holds console.pid and console.log. Chart.js, which its pages draw with, is downloaded from the npm
registry into the cache on install (infra/chartjs.py); the console serves it from there.
"""
from __future__ import annotations

from pushpipe.config import Settings
from pushpipe.infra import chartjs
from pushpipe.infra.pyservice import PythonService


class Console(PythonService):
    name, process_name, module, what = "web-console", "console", "pushpipe.console", "web console"

    def address(self, settings: Settings) -> str:
        return settings.console_url

    def install(self, settings: Settings) -> None:
        chartjs.install(settings)

    def prepare(self, settings: Settings) -> None:
        chartjs.install(settings)  # nothing to do once installed
