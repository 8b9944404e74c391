"""Every vendor's `VendorSpec`, keyed by the Vendor enum: the one table of vendors.

Adding a vendor: a member of `base.Vendor`, its module in connectors/ ending with `SPEC = VendorSpec(...)`,
and its line below (plus, for the embedded stack, its simulator in simulators/ and a line in
simulators/server.py SIMULATORS). Importing this module imports every adapter module (httpx, h2, jwt,
cryptography); jobs that only need the limits or quota facts pay that import once.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushpipe.connectors import apns, fcm, hms, honor, meizu, oppo, umeng, vivo, xiaomi
from pushpipe.connectors.base import Vendor, VendorAdapter, VendorConfig
from pushpipe.connectors.spec import VendorSpec

# A dict so that tests can patch an entry (monkeypatch.setitem); nothing else changes it.
SPECS: Mapping[Vendor, VendorSpec[Any]] = {s.vendor: s for s in (
    apns.SPEC,
    fcm.SPEC,
    hms.SPEC,
    honor.SPEC,
    xiaomi.SPEC,
    oppo.SPEC,
    vivo.SPEC,
    meizu.SPEC,
    umeng.SPEC,
)}


def spec(vendor: Vendor | str) -> VendorSpec[Any]:
    """The vendor's spec (parsed, so "apns" works); ValueError for an unknown or unregistered vendor."""
    parsed = Vendor(vendor)
    found = SPECS.get(parsed)
    if found is None:
        raise ValueError(f"no adapter for vendor {parsed.value!r} yet (have: {sorted(SPECS)})")
    return found


def create_adapter(vendor: Vendor | str, config: VendorConfig) -> VendorAdapter:
    """Build the adapter for `vendor`; ValueError if not implemented, TypeError for another vendor's config."""
    found = spec(vendor)
    if not isinstance(config, found.config):
        adapter = getattr(found.adapter, "__name__", found.vendor.value)
        raise TypeError(f"{adapter} needs a {found.config.__name__}, got {type(config).__name__}")
    return found.adapter(config)
