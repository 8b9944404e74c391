"""The simulated devices: the app and the phone brand of each token, as a test or the demo registered them
(admin POST /devices, simulators/server.py). The population (simulators/population.py) reads a token's brand
here for the brand's delivery rate and delay, and its app for the SDK events the app posts (APNs and FCM
name no app in a send, so only a registered token's app can ack them).

Memory is bounded: a plain dict of at most `limit` tokens (MAX_DEVICES, ~300 bytes each); a registration
that would pass it is refused whole, and a full reset (or {"clear": true}) empties it. An unregistered token
is `NOBODY`: no app, no brand (the vendor-wide rates).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from pushpipe.schemas import keys

MAX_DEVICES = 200_000


class Device(NamedTuple):
    app_id: str  # "" = unknown: the app posts no SDK events unless the vendor's callback names the app
    brand: str  # lower case; "" = none (the vendor-wide delivery rate and delay)


NOBODY = Device("", "")


class DeviceRegistry:
    """token -> Device, at most `limit` of them."""

    def __init__(self, limit: int = MAX_DEVICES) -> None:
        self.limit = limit
        self._devices: dict[str, Device] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, token: str) -> Device:
        return self._devices.get(token, NOBODY)

    def register(self, devices: Any, clear: bool = False) -> int:
        """Add or replace {token: {"app_id", "brand"}} (both optional), all or none, after forgetting every device
        if `clear`; returns the registry's size. Raises ValueError (and changes nothing) for a malformed entry or
        when the registry would hold more than `limit` tokens."""
        if not isinstance(devices, Mapping):
            raise ValueError('devices must be an object {token: {"app_id", "brand"}}')
        parsed = {_token(t): _device(t, v) for t, v in devices.items()}
        kept = {} if clear else self._devices
        size = len(kept) + sum(t not in kept for t in parsed)
        if size > self.limit:
            raise ValueError(f"the device registry holds at most {self.limit} tokens, this would make it {size}; "
                             'clear it first (POST /devices {"clear": true})')
        if clear:
            self._devices = {}
        self._devices.update(parsed)
        return len(self._devices)

    def clear(self) -> None:
        self._devices.clear()


def _token(token: Any) -> str:
    if not isinstance(token, str) or not token:
        raise ValueError(f"a device token must be a non-empty string, got {token!r}")
    return token


def _device(token: str, fields: Any) -> Device:
    if not isinstance(fields, Mapping) or set(fields) - {"app_id", "brand"}:
        raise ValueError(f'device {token[:40]!r}: expected {{"app_id", "brand"}}, got {fields!r:.80}')
    app_id, brand = str(fields.get("app_id") or ""), str(fields.get("brand") or "").lower()
    if app_id:
        keys.check_app_id(app_id)  # the gateway takes SDK events only for a well-formed app id
    return Device(app_id, brand)
