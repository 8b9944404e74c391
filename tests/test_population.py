"""The simulated population: who gets a push, opens and clicks it, decided the same way every time."""
from __future__ import annotations

from pushpipe.simulators import population
from pushpipe.simulators.batchsim import Receipt
from pushpipe.simulators.common import SimConfig
from pushpipe.simulators.xiaomi import XiaomiSimulator


def test_shares_follow_the_configured_rates_and_repeat() -> None:
    config = SimConfig(delivery_rate=0.8, open_rate=0.25, click_rate=0.5)
    fates = [population.fate(config, "m", f"t{i}") for i in range(20_000)]
    delivered, opened, clicked = (sum(f[n] for f in fates) / len(fates) for n in range(3))
    assert abs(delivered - 0.8) < 0.02 and abs(opened - 0.2) < 0.02 and abs(clicked - 0.1) < 0.02
    assert all(f.delivered or not f.opened for f in fates) and all(f.opened or not f.clicked for f in fates)
    assert fates == [population.fate(config, "m", f"t{i}") for i in range(20_000)], "the same fate every time"


def test_a_vendor_sends_receipts_only_for_what_reached_the_devices() -> None:
    sim = XiaomiSimulator()
    sim.state.config = SimConfig(delivery_rate=0.5)
    tokens = tuple(f"t{i}" for i in range(1000))
    kept = sim.reached((Receipt(1, "x", "m", tokens, 0.0, "http://gw/r/xiaomi/app/sig"), Receipt(16, "x", "m", ("dead",), 0.0)))
    delivered = [t for r in kept if r.kind == 1 for t in r.tokens]
    assert delivered == [t for t in tokens if population.fate(sim.state.config, "m", t).delivered] and 400 < len(delivered) < 600
    assert [r.tokens for r in kept if r.kind == 16] == [("dead",)], "an invalid target is reported whatever the population"
    assert population.app_of_callback("http://gw/r/xiaomi/app/sig") == "app" and population.app_of_callback("http://x/cb") == ""
