"""Run the web console: python -m pushpipe.console (address: the console_url setting)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import uvicorn

from pushpipe.config import load
from pushpipe.console.app import create_app
from pushpipe.console.sources import RealSources


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load()
    where = urlsplit(settings.console_url)
    # access logs off: the API's paths hold pins and message ids
    uvicorn.run(create_app(settings, RealSources(settings)), host=where.hostname or "127.0.0.1", port=where.port or 18490,
                access_log=False, loop="uvloop", http="httptools", log_level="warning")


main()
