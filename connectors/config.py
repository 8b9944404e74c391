"""Vendor credentials and endpoints: one JSON file, `PUSHPIPE_VENDORS_FILE`, validated at job start.

    {"apns": {"team_id": "ABCDE12345", "key_id": "KEY1234567", "p8_key": "/secrets/AuthKey.p8",
              "topic": "com.example.app", "base_url": "https://api.push.apple.com"},
     "fcm": {"service_account": "/secrets/firebase-adminsdk.json"},
     "hms": {"app_id": "101234567", "client_secret": "<AppSecret>"},
     "honor": {"app_id": "104123456", "client_id": "<client id>", "client_secret": "<client secret>"}}

On the embedded stack `pushpipe up` writes this file pointing at the vendor simulators.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushpipe.config import Settings
from pushpipe.connectors.apns import ApnsConfig
from pushpipe.connectors.base import Vendor, VendorConfig
from pushpipe.connectors.fcm import FcmConfig
from pushpipe.connectors.hms import HmsConfig
from pushpipe.connectors.honor import HonorConfig
from pushpipe.connectors.meizu import MeizuConfig
from pushpipe.connectors.oppo import OppoConfig
from pushpipe.connectors.umeng import UmengConfig
from pushpipe.connectors.vivo import VivoConfig
from pushpipe.connectors.xiaomi import XiaomiConfig

CONFIG_TYPES: dict[Vendor, type] = {Vendor.APNS: ApnsConfig, Vendor.FCM: FcmConfig, Vendor.HMS: HmsConfig,
                                    Vendor.HONOR: HonorConfig,
                                    Vendor.XIAOMI: XiaomiConfig, Vendor.OPPO: OppoConfig, Vendor.VIVO: VivoConfig,
                                    Vendor.MEIZU: MeizuConfig, Vendor.UMENG: UmengConfig}


def parse(document: dict[str, Any]) -> dict[str, VendorConfig]:
    """Typed configs keyed by vendor name; a ValueError names the vendor that is wrong."""
    configs: dict[str, VendorConfig] = {}
    for name, fields in document.items():
        vendor = Vendor(name)
        if vendor not in CONFIG_TYPES:
            raise ValueError(f"vendors file: no adapter for {name!r} yet")
        try:
            configs[vendor.value] = CONFIG_TYPES[vendor](**fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"vendors file: {name}: {exc}") from exc
    return configs


def vendor_configs(settings: Settings) -> dict[str, VendorConfig]:
    path = settings.vendors_file
    if not path.exists():
        raise FileNotFoundError(f"no vendor configuration at {path} (set PUSHPIPE_VENDORS_FILE or run `pushpipe up`)")
    return parse(json.loads(path.read_text()))


def simulator_vendors(state_dir: Path) -> dict[str, Any]:
    """The vendors-file document for the simulators whose state (simulators.json) is in state_dir."""
    sims = json.loads((state_dir / "simulators.json").read_text())
    document: dict[str, Any] = {}
    for name, credentials_path in sims["credentials"].items():
        creds = json.loads(Path(credentials_path).read_text())
        if name == Vendor.APNS:
            document[name] = {"team_id": creds["team_id"], "key_id": creds["key_id"], "p8_key": creds["key_path"],
                              "topic": creds["topic"], "base_url": sims["api_url"], "sandbox_url": sims["api_url"],
                              "verify": sims["ca_cert"]}
        elif name in SIMULATOR_ENTRIES:
            document[name] = SIMULATOR_ENTRIES[Vendor(name)](creds, sims)
    return document


def _fcm_entry(creds: dict[str, Any], sims: dict[str, Any]) -> dict[str, Any]:
    """The simulator's service-account key; its token_uri is Google's, so point token_uri at the simulator."""
    api = sims["api_url"] + creds["api_path"]
    return {"service_account": creds["service_account"], "base_url": api, "token_uri": api + "/token",
            "verify": sims["ca_cert"]}


def _client_credentials_entry(creds: dict[str, Any], sims: dict[str, Any]) -> dict[str, Any]:
    """HMS / Honor: app id, client id/secret; API and OAuth both on the simulator under its api_path."""
    api = sims["api_url"] + creds["api_path"]
    fields = {k: v for k, v in creds.items() if k in ("app_id", "client_id", "client_secret")}
    return {**fields, "base_url": api, "auth_url": api, "verify": sims["ca_cert"]}


def _app_credentials_entry(creds: dict[str, Any], sims: dict[str, Any]) -> dict[str, Any]:
    """Xiaomi / OPPO / vivo / Meizu / Umeng: the credentials file holds config fields; fixed API paths."""
    return {**creds, "base_url": sims["api_url"], "verify": sims["ca_cert"]}


SIMULATOR_ENTRIES: dict[Vendor, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    Vendor.FCM: _fcm_entry,
    Vendor.HMS: _client_credentials_entry,
    Vendor.HONOR: _client_credentials_entry,
    Vendor.XIAOMI: _app_credentials_entry,
    Vendor.OPPO: _app_credentials_entry,
    Vendor.VIVO: _app_credentials_entry,
    Vendor.MEIZU: _app_credentials_entry,
    Vendor.UMENG: _app_credentials_entry,
}


def write_simulator_vendors(state_dir: Path, target: Path) -> None:
    """Write the document owner-readable only: it holds client secrets (HMS, Honor, ...)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(simulator_vendors(state_dir), indent=2) + "\n")
    os.chmod(target, 0o600)  # also when the file already existed
