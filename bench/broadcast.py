"""Broadcast through the real stack: N devices registered on HMS (1000 tokens per call), one broadcast.

Prints seconds to register, then from producing the broadcast until the simulator has accepted
every device, and tokens/s over that span.

    .venv/bin/python -m bench.broadcast --devices 100000
"""
from __future__ import annotations

import argparse
import time
import uuid

from infra import stack
from infra.simulators import SimulatorAdmin
from pushpipe import observe
from pushpipe.config import load
from pushpipe.producer import PushProducer, device_event, push_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    run = uuid.uuid4().hex[:8]
    app = f"broadcast-{run}"
    producer = PushProducer(settings)
    admin = SimulatorAdmin(settings.simulator_admin_url, timeout_s=120)
    t0 = time.monotonic()
    for n in range(args.devices):
        producer.device_event(device_event(app, f"u{n}", f"{run}{n:08x}IQAAAACy" + "x" * 40, vendor="hms"))
    producer.flush()
    produced_s = time.monotonic() - t0
    observe.wait_fanout_read(settings, timeout_s=3600)
    registered_s = time.monotonic() - t0
    t1 = time.monotonic()
    producer.request(push_request(app, [], "Big news", "to everyone", target="broadcast"))
    producer.flush()
    observe.wait_for(lambda: admin.accepted(run, vendor="hms")["unique"] >= args.devices, 3600, "every device")
    delivered_s = time.monotonic() - t1
    print(f"\nbench/broadcast.py: one broadcast to {args.devices:,} HMS devices")
    print(stack.format_table(("figure", "value"), [
        ("device events produced/s", f"{args.devices / produced_s:,.0f}"),
        ("seconds until fan-out holds every device", f"{registered_s:.1f} s"),
        ("seconds from broadcast to all accepted", f"{delivered_s:.1f} s"),
        ("tokens/s accepted", f"{args.devices / delivered_s:,.0f}"),
    ]))


if __name__ == "__main__":
    main()
