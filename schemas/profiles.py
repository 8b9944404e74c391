"""A device's profile as it travels with each of its tokens: brand, model, OS version and app version."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS = ("brand", "model", "os_version", "app_version")
SEP = "\x1f"


def encode(device: Mapping[str, Any]) -> str:
    values = [str(device.get(f) or "") for f in FIELDS]
    return SEP.join(values) if any(values) else ""


def decode(profile: str) -> dict[str, str]:
    values = profile.split(SEP) if profile else []
    return {f: values[i] if i < len(values) else "" for i, f in enumerate(FIELDS)}
