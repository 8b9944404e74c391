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
from pathlib import Path
from typing import Any

from pushpipe.config import Settings
from pushpipe.connectors.base import Vendor, VendorConfig
from pushpipe.connectors.registry import SPECS


def parse(document: dict[str, Any]) -> dict[str, VendorConfig]:
    """Typed configs keyed by vendor name; a ValueError names the vendor that is wrong."""
    configs: dict[str, VendorConfig] = {}
    for name, fields in document.items():
        vendor = Vendor(name)
        if vendor not in SPECS:
            raise ValueError(f"vendors file: no adapter for {name!r} yet")
        try:
            configs[vendor.value] = SPECS[vendor].config(**fields)
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
        if name in SPECS:
            creds = json.loads(Path(credentials_path).read_text())
            document[name] = SPECS[Vendor(name)].simulator_entry(creds, sims)
    return document


def simulator_config(state_dir: Path, vendor: Vendor | str, **overrides: Any) -> VendorConfig:
    """`vendor`'s config pointing at the simulators in state_dir: its vendors-file entry plus overrides."""
    parsed = Vendor(vendor)
    entry = simulator_vendors(state_dir)[parsed.value]
    config: VendorConfig = SPECS[parsed].config(**{**entry, **overrides})
    return config


def write_simulator_vendors(state_dir: Path, target: Path) -> None:
    """Write the document owner-readable only: it holds client secrets (HMS, Honor, ...)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(simulator_vendors(state_dir), indent=2) + "\n")
    os.chmod(target, 0o600)  # also when the file already existed
