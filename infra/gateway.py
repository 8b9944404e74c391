"""The receipt gateway (`python -m pushpipe.gateway`) as a managed background service.

run_dir/gateway/ holds gateway.pid and gateway.log; the key that signs callback URLs and SDK keys is
`receipt_key_file` (run/receipt.key, mode 0600), created on first start. Once it runs, the HMS and Honor
simulators are told the gateway's console receipt URL, and the per-message vendors get theirs with each send.
"""
from __future__ import annotations

import sys

import httpx

from pushpipe.config import Settings
from pushpipe.connectors.registry import SPECS
from pushpipe.gateway import signing
from pushpipe.infra import process
from pushpipe.infra.service import Health

NAME = "gateway"
START_TIMEOUT_S = 30.0


class Gateway:
    name = "receipt-gateway"
    process_name = NAME
    version = "0.1.0"

    def address(self, settings: Settings) -> str:
        return settings.gateway_url

    def install(self, settings: Settings) -> None:
        """Nothing to download; the key is made here so that the jobs find it before the gateway runs."""
        signing.load_key(settings.receipt_key_file, create=True)

    def start(self, settings: Settings) -> None:
        signing.load_key(settings.receipt_key_file, create=True)
        if process.needs_start(settings, NAME, lambda: self.health(settings).ok):
            process.start(settings, NAME, [sys.executable, "-m", "pushpipe.gateway"])
            process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "receipt gateway", settings=settings, name=NAME)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME, timeout=10)

    def health(self, settings: Settings) -> Health:
        try:
            ok = httpx.get(f"{settings.gateway_url}/health", timeout=2).json().get("ok")
        except (httpx.HTTPError, ValueError):
            return Health(False, "not answering")
        return Health(bool(ok), "answering")


def console_urls(settings: Settings) -> dict[str, str]:
    """The receipt URL each console-configured vendor posts to."""
    key = signing.load_key(settings.receipt_key_file, create=True)
    return {vendor.value: signing.console_url(settings.gateway_url, key, vendor.value)
            for vendor, spec in SPECS.items() if spec.receipts == "console"}
