"""Broadcast through the real stack: N devices registered on HMS (1000 tokens per call), then broadcasts.

Prints device events produced/s, seconds until fan-out holds every device, and for each broadcast
the seconds from producing it until the simulator accepted its last token, tokens/s over that span,
the seconds until ClickHouse counted every token, the seconds until every token's delivery receipt (the
simulator sends one for each accepted token) was counted in the lifecycle, and the CPU each component spent
until each of those three moments (per token: what the machine's cores bound).
Apps named bench-* have no rate limit in the embedded dispatch policy, so this measures the pipeline.

    .venv/bin/python -m bench.broadcast --devices 1000000 --broadcasts 2
    .venv/bin/python -m bench.broadcast --devices 1000000 --app bench-broadcast-1a2b3c4d   # reuse its devices
    .venv/bin/python -m bench.broadcast --devices 100000 --broadcasts 2 --analyst-query-s 20

With --analyst-query-s, an analyst's query of about that many seconds runs on ClickHouse from the moment
each even-numbered broadcast is sent: compare its seconds from last accept to counted with the odd ones'.
"""
from __future__ import annotations

import argparse
import threading
import time
import uuid
from dataclasses import dataclass

from bench.cpu import CpuMeter
from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.sinks import clickhouse


def register(settings: Settings, producer: PushProducer, app: str, run: str, devices: int) -> list[tuple[str, str]]:
    """Register `devices` HMS devices for the app; the figures of how long that took."""
    started = time.monotonic()
    for n in range(devices):
        producer.device_event(device_event(app, f"u{n}", f"{run}{n:08x}IQAAAACy" + "x" * 40, vendor="hms"))
        if n % 100_000 == 99_999:
            print(f"[bench] produced {n + 1:,} device events", flush=True)
    producer.flush()
    produced_s = time.monotonic() - started
    observe.wait_fanout_read(settings, timeout_s=3600)
    return [("device events produced/s", f"{devices / produced_s:,.0f}"),
            ("seconds until fan-out holds every device", f"{time.monotonic() - started:.1f} s")]


def all_accepted(admin: SimulatorAdmin, prefix: str, expected: int) -> dict | None:
    """The simulator's summary once it has accepted `expected` tokens with this prefix."""
    summary = admin.accepted(prefix, vendor="hms", tokens=False)
    return summary if summary["count"] >= expected else None


def analyst_rows(settings: Settings, seconds: float) -> int:
    """How many rows of numbers() an analyst's query hashes in about `seconds` (measured on a sample)."""
    ch = clickhouse.connect(settings, create=False)
    started = time.monotonic()
    ch.rows("SELECT sum(cityHash64(number)) AS s FROM numbers(200000000)")
    ch.close()
    return int(200_000_000 * seconds / max(time.monotonic() - started, 0.01))


def analyst_query(settings: Settings, rows: int, took: dict[str, float]) -> threading.Thread:
    def run() -> None:
        ch = clickhouse.connect(settings, create=False)
        started = time.monotonic()
        ch.rows(f"SELECT sum(cityHash64(number)) AS s FROM numbers({rows})")
        took["s"] = time.monotonic() - started
        ch.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class Broadcast:
    """One broadcast's figures: seconds to the last accept, to ClickHouse's count and to the last delivery receipt
    counted, and the CPU spent until each."""
    accepted_s: float
    counted_s: float
    receipts_s: float
    delivery: CpuMeter
    whole: CpuMeter
    receipts: CpuMeter
    analyst_s: float | None


def send_broadcast(settings: Settings, producer: PushProducer, admin: SimulatorAdmin, app: str, run: str, devices: int,
                   n: int, analyst_rows: int = 0) -> Broadcast:
    """Send broadcast number n; measured until every device has it and until ClickHouse counts it all."""
    # The simulator's record of earlier runs is dropped: each progress poll scans it, which at millions
    # of tokens would charge the bench's own bookkeeping to the pipeline.
    admin.reset(config=False)
    # its own campaign each time: a rerun with --app must not find the counts of an earlier run's broadcast n
    campaign = f"bench-{run}-{n}-{uuid.uuid4().hex[:8]}"
    with CpuMeter(settings) as receipts:
        with CpuMeter(settings) as whole:
            with CpuMeter(settings) as delivery:
                sent_at = time.time()
                producer.request(push_request(app, [], "Big news", f"to everyone, #{n}", target="broadcast", campaign=campaign))
                producer.flush()
                took: dict[str, float] = {}
                analyst = analyst_query(settings, analyst_rows, took) if analyst_rows else None
                # polled every 2 s: the figure is the simulator's own time of the last accept, not the poll's
                done = observe.wait_for(lambda: all_accepted(admin, run, devices), 3600, f"broadcast {n} to every device",
                                        interval_s=2.0)
            observe.wait_campaign_counted(settings, campaign, devices, 3600, interval_s=2.0)
            counted_s = time.time() - sent_at
        # the simulator sends every accepted token's delivery receipt: the rest of the work a broadcast makes
        observe.wait_campaign_delivered(settings, campaign, devices, 3600, interval_s=2.0)
        receipts_s = time.time() - sent_at
    if analyst:
        analyst.join()
    # the simulator's clock: when it accepted the last token
    return Broadcast(done["last_at"] - sent_at, counted_s, receipts_s, delivery, whole, receipts,
                     took.get("s", 0.0) if analyst else None)


def broadcast(settings: Settings, producer: PushProducer, admin: SimulatorAdmin, app: str, run: str, devices: int,
              n: int, analyst_rows: int = 0) -> list[tuple[str, str]]:
    """Send broadcast number n; print the CPU tables; the figures."""
    done = send_broadcast(settings, producer, admin, app, run, devices, n, analyst_rows)
    print(f"\nCPU spent from broadcast {n} until its last token was accepted:\n{done.delivery.table(devices, 'token')}")
    print(f"\nCPU spent from broadcast {n} until ClickHouse counted every token:\n{done.whole.table(devices, 'token')}")
    print(f"\nCPU spent from broadcast {n} until every token's delivery receipt was counted:\n{done.receipts.table(devices, 'token')}")
    return [(f"broadcast {n}: seconds to all accepted", f"{done.accepted_s:.1f} s"),
            (f"broadcast {n}: tokens/s accepted", f"{devices / done.accepted_s:,.0f}"),
            (f"broadcast {n}: seconds until ClickHouse counts every token", f"{done.counted_s:.1f} s"),
            (f"broadcast {n}: seconds from last accept to counted", f"{done.counted_s - done.accepted_s:.1f} s"),
            (f"broadcast {n}: seconds until every delivery receipt is counted", f"{done.receipts_s:.1f} s")] + (
            [(f"broadcast {n}: analyst's query beside it", f"{done.analyst_s:.1f} s")] if done.analyst_s is not None else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--broadcasts", type=int, default=1, help="broadcasts sent one after another")
    parser.add_argument("--app", help="an app registered by an earlier run (bench-broadcast-<run>): skip registering")
    parser.add_argument("--analyst-query-s", type=float, default=0, help="a ClickHouse query this long beside even broadcasts")
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    app = args.app or f"bench-broadcast-{uuid.uuid4().hex[:8]}"
    run = app.rsplit("-", 1)[1]
    producer = PushProducer(settings)
    admin = SimulatorAdmin(settings.simulator_admin_url, timeout_s=120)
    rows = [("app", app)] + ([] if args.app else register(settings, producer, app, run, args.devices))
    slow = analyst_rows(settings, args.analyst_query_s) if args.analyst_query_s else 0
    for n in range(1, args.broadcasts + 1):
        rows += broadcast(settings, producer, admin, app, run, args.devices, n, slow if n % 2 == 0 else 0)
    print(f"\nbench/broadcast.py: {args.broadcasts} broadcast(s) to {args.devices:,} HMS devices")
    print(stack.format_table(("figure", "value"), rows))


if __name__ == "__main__":
    main()
