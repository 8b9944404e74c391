"""Run the receipt gateway: python -m pushpipe.gateway (address: the gateway_url setting)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import uvicorn

from pushpipe.config import load
from pushpipe.gateway import app, signing
from pushpipe.gateway.outbox import Outbox


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load()
    where = urlsplit(settings.gateway_url)
    server = app.create(settings, signing.load_key(settings.receipt_key_file), Outbox(settings.kafka_bootstrap))
    # access logs off: a callback URL holds its signature
    uvicorn.run(server, host=where.hostname or "127.0.0.1", port=where.port or 18480, access_log=False,
                loop="uvloop", http="httptools", log_level="warning")


main()
