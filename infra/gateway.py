"""The receipt gateway (`python -m pushpipe.gateway`) as a managed background service.

run_dir/gateway/ holds gateway.pid and gateway.log; it reads the app registry's topic, so the topics are made
(idempotent) before it starts; the key that signs callback URLs and SDK keys is
`receipt_key_file` (run/receipt.key, mode 0600), created on first start. Once it runs, the HMS and Honor
simulators are told the gateway's console receipt URL, and the per-message vendors get theirs with each send.
"""
from __future__ import annotations

from pushpipe.config import Settings
from pushpipe.connectors.registry import SPECS
from pushpipe.gateway import signing
from pushpipe.infra.kafka import ensure_topics
from pushpipe.infra.pyservice import PythonService


class Gateway(PythonService):
    name, process_name, module, what = "receipt-gateway", "gateway", "pushpipe.gateway", "receipt gateway"

    def address(self, settings: Settings) -> str:
        return settings.gateway_url

    def install(self, settings: Settings) -> None:
        """Nothing to download; the key is made here so that the jobs find it before the gateway runs."""
        signing.load_key(settings.receipt_key_file, create=True)

    def prepare(self, settings: Settings) -> None:
        """The key, and the topics (idempotent): it is healthy once it has read the app registry's topic."""
        signing.load_key(settings.receipt_key_file, create=True)
        ensure_topics(settings)


def console_urls(settings: Settings) -> dict[str, str]:
    """The receipt URL each console-configured vendor posts to."""
    key = signing.load_key(settings.receipt_key_file, create=True)
    return {vendor.value: signing.console_url(settings.gateway_url, key, vendor.value)
            for vendor, spec in SPECS.items() if spec.receipts == "console"}
