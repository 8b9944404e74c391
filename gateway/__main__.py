"""Run the receipt gateway: python -m pushpipe.gateway (address: the gateway_url setting)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import uvicorn

from pushpipe import collector
from pushpipe.config import load
from pushpipe.gateway import app, signing
from pushpipe.gateway.outbox import Outbox
from pushpipe.schemas.apps import AppFollower


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load()
    where = urlsplit(settings.gateway_url)
    apps = AppFollower(settings).start()  # the app registry, followed by a daemon thread; callbacks wait (503) for its first read
    server = app.create(settings, signing.load_key(settings.receipt_key_file), Outbox(settings.kafka_bootstrap), apps,
                        ready=apps.loaded.is_set, closing=apps.close)
    collector.tune_for_streams()  # start-up frozen, young collections rare: each request's objects die by refcount
    # access logs off: a callback URL holds its signature
    uvicorn.run(server, host=where.hostname or "127.0.0.1", port=where.port or 18480, access_log=False,
                loop="uvloop", http="httptools", log_level="warning")


main()
