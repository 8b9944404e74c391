"""The one extension point for push vendors: shared types, the adapter Protocol and the registry.

An adapter turns one vendor-neutral `Notification` plus a list of device tokens into exactly one
`TokenResult` per token. It never retries and never raises for vendor or transport errors: those
become typed outcomes, and the pipeline decides what to retry (see STYLE.md "Follow" 5 and 6).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, get_args


class Vendor(StrEnum):
    APNS = "apns"
    FCM = "fcm"
    HMS = "hms"
    XIAOMI = "xiaomi"
    OPPO = "oppo"
    VIVO = "vivo"
    HONOR = "honor"
    MEIZU = "meizu"
    UMENG = "umeng"


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    INVALID_TOKEN = "invalid_token"  # permanent: the token is dead, drop it
    THROTTLED = "throttled"  # transient: retry after retry_after_s (or backoff)
    UNAVAILABLE = "unavailable"  # transient: vendor outage, 5xx, timeout, transport error
    REJECTED = "rejected"  # permanent: bad request, payload, credentials; do not retry


class TokenResult(NamedTuple):
    """One token's result; a NamedTuple because a broadcast makes a million of them (4x cheaper than a dataclass)."""

    token: str
    outcome: Outcome
    code: str = ""  # vendor status (e.g. "410"), "timeout"/"transport", or "" for local checks
    reason: str = ""  # vendor reason (e.g. "Unregistered") or local reason ("PayloadTooLarge")
    retry_after_s: float | None = None
    vendor_msg_id: str = ""


Priority = Literal["high", "normal", "low"]
Environment = Literal["production", "sandbox"]


@dataclass(frozen=True)
class Notification:
    """A vendor-neutral message; adapters map it onto each vendor's payload."""

    msg_id: str
    app_id: str
    title: str = ""
    body: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
    priority: Priority = "high"
    category: str = ""
    message_class: str = ""  # "service" or "marketing" as the policy classes the category; "": not classed
    collapse_id: str = ""
    ttl_s: int = 86_400  # 0 = deliver now or drop
    environment: Environment = "production"
    topic: str = ""  # APNs bundle id; empty = the adapter's configured topic

    def __post_init__(self) -> None:
        if self.priority not in get_args(Priority):
            raise ValueError(f"priority must be one of {get_args(Priority)}, got {self.priority!r}")
        if self.environment not in get_args(Environment):
            raise ValueError(f"environment must be one of {get_args(Environment)}, got {self.environment!r}")
        if self.ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {self.ttl_s}")


@dataclass(frozen=True)
class Secret:
    """A credential (or a path to one) that never shows in repr, str or logs."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return "**********"

    def __repr__(self) -> str:
        return "Secret('**********')"


class VendorConfig(Protocol):
    """Per-vendor settings object; validated in its own __post_init__."""

    vendor: ClassVar[Vendor]


class VendorAdapter(Protocol):
    vendor: Vendor
    max_batch: int  # most tokens the pipeline should pass to one send()

    async def open(self) -> None:
        """Create clients and credentials; call once before send()."""

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        """One result per token, in order. Never raises for vendor, transport or timeout errors."""

    async def aclose(self) -> None:
        """Close clients; idempotent."""


AdapterFactory = Callable[[Any], VendorAdapter]


def _apns(config: VendorConfig) -> VendorAdapter:
    from pushpipe.connectors.apns import ApnsAdapter, ApnsConfig  # lazy: apns imports this module

    if not isinstance(config, ApnsConfig):
        raise TypeError(f"APNs needs an ApnsConfig, got {type(config).__name__}")
    return ApnsAdapter(config)


def _fcm(config: VendorConfig) -> VendorAdapter:
    from pushpipe.connectors.fcm import FcmAdapter, FcmConfig

    if not isinstance(config, FcmConfig):
        raise TypeError(f"FCM needs an FcmConfig, got {type(config).__name__}")
    return FcmAdapter(config)


def _hms(config: VendorConfig) -> VendorAdapter:
    from pushpipe.connectors.hms import HmsAdapter, HmsConfig

    if not isinstance(config, HmsConfig):
        raise TypeError(f"HMS needs an HmsConfig, got {type(config).__name__}")
    return HmsAdapter(config)


def _honor(config: VendorConfig) -> VendorAdapter:
    from pushpipe.connectors.honor import HonorAdapter, HonorConfig

    if not isinstance(config, HonorConfig):
        raise TypeError(f"Honor needs a HonorConfig, got {type(config).__name__}")
    return HonorAdapter(config)


def _batch(module: str, adapter: str, config_type: str) -> AdapterFactory:
    """Factory for a batch vendor module (Xiaomi, OPPO, vivo, Meizu, Umeng), imported on first use."""

    def factory(config: VendorConfig) -> VendorAdapter:
        mod = importlib.import_module(module)
        if not isinstance(config, getattr(mod, config_type)):
            raise TypeError(f"{adapter} needs a {config_type}, got {type(config).__name__}")
        instance: VendorAdapter = getattr(mod, adapter)(config)
        return instance

    return factory


ADAPTERS: dict[Vendor, AdapterFactory] = {
    Vendor.APNS: _apns,
    Vendor.FCM: _fcm,
    Vendor.HMS: _hms,
    Vendor.HONOR: _honor,
    Vendor.XIAOMI: _batch("pushpipe.connectors.xiaomi", "XiaomiAdapter", "XiaomiConfig"),
    Vendor.OPPO: _batch("pushpipe.connectors.oppo", "OppoAdapter", "OppoConfig"),
    Vendor.VIVO: _batch("pushpipe.connectors.vivo", "VivoAdapter", "VivoConfig"),
    Vendor.MEIZU: _batch("pushpipe.connectors.meizu", "MeizuAdapter", "MeizuConfig"),
    Vendor.UMENG: _batch("pushpipe.connectors.umeng", "UmengAdapter", "UmengConfig"),
}


def create_adapter(vendor: Vendor | str, config: VendorConfig) -> VendorAdapter:
    """Build the adapter for `vendor` (parsed, so "apns" works); ValueError if not implemented."""
    parsed = Vendor(vendor)
    factory = ADAPTERS.get(parsed)
    if factory is None:
        raise ValueError(f"no adapter for vendor {parsed.value!r} yet (have: {sorted(ADAPTERS)})")
    return factory(config)
