"""`VendorSpec`: everything the rest of pushpipe needs to know about one vendor, declared once.

Each vendor module ends with `SPEC = VendorSpec(...)`; connectors.registry collects them. Readers:
create_adapter() (adapter, config), connectors.config (config, simulator_entry), jobs.policy.limits
(payload), jobs.policy.classify (daily_quota, unclassified_per_day), pushpipe.demo (sample_token).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pushpipe.connectors.base import Vendor, VendorAdapter, VendorConfig
from pushpipe.connectors.limits import PayloadLimit

C = TypeVar("C", bound=VendorConfig)
Receipts = Literal["message", "console", "none"]

# (the simulator's credentials.json for this vendor, simulators.json) -> this vendor's vendors-file entry
SimulatorEntry = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class VendorSpec(Generic[C]):
    """One vendor's facts.

    vendor                the key (Vendor enum; its value is the name in vendors files and DeviceEvent.vendor)
    config                the config class (vendors-file entry -> config(**fields)); also what create_adapter checks
    adapter               builds the adapter from a config
    payload               what the vendor accepts, for the check before dispatch
    simulator_entry       the vendors-file entry pointing at the vendor simulator, from its credentials
    daily_quota           the vendor caps marketing messages per device per day (China vendors; counted by policy)
    unclassified_per_day  cap for every message when the app has not registered message classes (Xiaomi: 1)
    receipts              how the vendor posts delivery receipts: "message" to the callback URL each send carries
                          (Notification.callback_url), "console" to one URL set in its console, "none" not at all
    sample_token          a token of the vendor's shape from a hex id (demos; the simulators check shapes);
                          None: devices do not register with this vendor (Umeng, the fallback channel)
    """

    vendor: Vendor
    config: type[C]
    adapter: Callable[[C], VendorAdapter]
    payload: PayloadLimit
    simulator_entry: SimulatorEntry
    daily_quota: bool = False
    unclassified_per_day: int | None = None
    receipts: Receipts = "none"
    sample_token: Callable[[str], str] | None = None
