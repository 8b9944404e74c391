"""The vendor simulators (`python -m pushpipe.simulators.server`) as a managed background service.

run_dir/simulators/ holds simulators.pid, simulators.log and the simulator state: tls/ca.pem,
apns/AuthKey_<kid>.p8 + apns/credentials.json, fcm/service-account.json + fcm/credentials.json,
hms|honor/credentials.json (mode 0600), and simulators.json (URLs, CA, credential paths).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pushpipe.config import Settings
from pushpipe.connectors.apns import ApnsConfig
from pushpipe.infra import gateway, http, process
from pushpipe.infra.service import Health

NAME = "simulators"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def state_dir(settings: Settings) -> Path:
    """The running simulator's state dir (it may have been started with another home)."""
    try:
        return Path(SimulatorAdmin(settings.simulator_admin_url, timeout_s=2).health()["state_dir"])
    except (httpx.HTTPError, ValueError, KeyError):
        return process.service_dir(settings, NAME)


def apns_config(settings: Settings, **overrides: Any) -> ApnsConfig:
    """An ApnsConfig pointing at the running simulator, with its dev key and CA."""
    d = state_dir(settings)
    defaults = {"base_url": settings.simulator_url, "sandbox_url": settings.simulator_url,
                "verify": str(d / "tls" / "ca.pem")}
    return ApnsConfig.from_credentials(d / "apns" / "credentials.json", **{**defaults, **overrides})


def simulator_config(settings: Settings, vendor: str, **overrides: Any) -> Any:
    """Any vendor's config pointing at the running simulator: its vendors.json entry plus overrides."""
    from pushpipe.connectors import config

    return config.simulator_config(state_dir(settings), vendor, **overrides)


class Simulators:
    """Service: the APNs (and later other vendors') simulators in one process."""

    name = "vendor-simulators"
    process_name = NAME  # its run folder and pid file
    version = "0.1.0"

    def address(self, settings: Settings) -> str:
        return f"{settings.simulator_url} (admin {settings.simulator_admin_url})"

    def install(self, settings: Settings) -> None:
        """Nothing to download: the simulators are part of this package."""

    def start(self, settings: Settings) -> None:
        if not self.health(settings).ok:
            population = {"PUSHPIPE_SIM_RECEIPT_URLS": json.dumps(gateway.console_urls(settings)),
                          "PUSHPIPE_SIM_SDK_URL": settings.gateway_url, "PUSHPIPE_SIM_SDK_KEY_FILE": str(settings.receipt_key_file)}
            process.start(settings, NAME, _argv(settings, process.service_dir(settings, NAME)), env=population)
            process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "vendor simulators",
                               settings=settings, name=NAME)
        _write_vendors_file(settings)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, NAME, timeout=STOP_TIMEOUT_S)

    def health(self, settings: Settings) -> Health:
        try:
            doc = SimulatorAdmin(settings.simulator_admin_url).health()
        except (httpx.HTTPError, ValueError) as exc:
            return Health(False, f"admin API: {type(exc).__name__}")
        return Health(bool(doc.get("ok")), f"pid {doc.get('pid')}, vendors {','.join(doc.get('vendors', []))}")


class SimulatorAdmin:
    """Client for the simulators' admin API (tests, demos, benchmarks)."""

    def __init__(self, admin_url: str, timeout_s: float = 10.0) -> None:
        self.url, self.timeout_s = admin_url.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = http.client().request(method, self.url + path, params=params, json=body, timeout=self.timeout_s)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def accepted(self, prefix: str = "", payloads: bool = False, vendor: str | None = None,
                 tokens: bool = True) -> dict[str, Any]:
        """{"count", "first_at", "last_at"[, "unique", "tokens"][, "records"]} of accepted tokens with this prefix."""
        params = {"prefix": prefix, "payloads": int(payloads), "tokens": int(tokens), **({"vendor": vendor} if vendor else {})}
        return self._call("GET", "/accepted", params=params)

    def stats(self, prefix: str = "") -> dict[str, Any]:
        return self._call("GET", "/stats", params={"prefix": prefix})

    def configure(self, vendor: str | None = None, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/config", body={**changes, **({"vendor": vendor} if vendor else {})})

    def reset(self, *, config: bool = True, records: bool = True) -> None:
        self._call("POST", "/reset", body={"config": config, "records": records})

    def register_devices(self, devices: dict[str, dict[str, str]], clear: bool = False) -> int:
        """Register simulated devices {token: {"app_id", "brand"}} (simulators/devices.py); returns how many are known."""
        return int(self._call("POST", "/devices", body={"devices": devices, "clear": clear})["devices"])

    def register_apns_key(self, team_id: str, key_id: str, public_key_pem: str) -> None:
        self._call("POST", "/keys", body={"vendor": "apns", "team_id": team_id, "key_id": key_id,
                                          "public_key": public_key_pem})

    def register_key(self, vendor: str, **fields: Any) -> None:
        """Register a credential with any simulator (fields per vendor: see simulators.server POST /keys)."""
        self._call("POST", "/keys", body={**fields, "vendor": vendor})


def _argv(settings: Settings, directory: Path) -> list[str]:
    api, admin = urlsplit(settings.simulator_url), urlsplit(settings.simulator_admin_url)
    return [sys.executable, "-m", "pushpipe.simulators.server", "--state-dir", str(directory),
            "--host", api.hostname or "127.0.0.1", "--port", str(api.port or 18443),
            "--admin-port", str(admin.port or 18444)]


def _write_vendors_file(settings: Settings) -> None:
    """Point the pipeline at the simulators, unless the vendors file is a user's own elsewhere."""
    from pushpipe.connectors.config import write_simulator_vendors

    target = settings.vendors_file
    if target.exists() and not target.resolve().is_relative_to(settings.run_dir.resolve()):
        return
    write_simulator_vendors(state_dir(settings), target)
