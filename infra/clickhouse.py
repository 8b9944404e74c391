"""The embedded ClickHouse service: the chstore process that alone owns the chDB directory."""
from __future__ import annotations

import sys
from urllib.parse import unquote, urlparse

import httpx

from pushpipe.config import Settings
from pushpipe.infra import http, process
from pushpipe.infra.service import Health

NAME = "clickhouse"


class ClickHouse:
    name = NAME

    @property
    def version(self) -> str:
        import chdb

        return f"chDB {chdb.__version__}"

    def address(self, settings: Settings) -> str:
        return settings.clickhouse_url

    def install(self, settings: Settings) -> None:
        """chDB comes with the Python package; nothing to download."""

    def start(self, settings: Settings) -> None:
        if settings.clickhouse_mode != "embedded" or self.health(settings).ok:
            return
        url = urlparse(settings.clickhouse_url)
        data = process.service_dir(settings, NAME) / "data"
        argv = [sys.executable, "-m", "pushpipe.sinks.chstore", "--path", str(data), "--host", url.hostname or "127.0.0.1", "--port", str(url.port)]
        if url.username:  # the store asks for the URL's user and password (the password through the environment)
            argv += ["--user", url.username]
        process.start(settings, NAME, argv, env={"CHSTORE_PASSWORD": unquote(url.password or "")})
        process.wait_until(lambda: self.health(settings).ok, 60, "ClickHouse (chstore)", settings=settings, name=NAME)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME)

    def health(self, settings: Settings) -> Health:
        try:
            response = http.client().get(f"{settings.clickhouse_url}/ping", timeout=2)
            return Health(response.status_code == 200, f"mode={settings.clickhouse_mode}")
        except httpx.HTTPError as exc:
            return Health(False, type(exc).__name__)
