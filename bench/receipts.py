"""Receipts through the real receipt gateway into ClickHouse (`pushpipe up` first, or it starts it).

First (not measured) registers --devices HMS devices and sends --messages broadcasts to them, and waits
until ClickHouse holds every accepted token's lifecycle. Then posts a delivered receipt for each (message,
token), as the apps' SDKs would (batches of --batch events, --concurrency uploads in flight), and prints:
receipts/s acknowledged by the gateway (each answer waits for Kafka's acks=all), seconds from the last
acknowledgement until ClickHouse's lifecycle counts them all, and CPU per receipt for each component.
Goal (issue 13): 5,000 receipts/s, each counted in ClickHouse within 5 s.

    .venv/bin/python -m bench.receipts --devices 10000 --messages 5
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx

from bench.cpu import CpuMeter
from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.gateway import signing
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.sinks import clickhouse

GOAL_PER_S, GOAL_LAG_S = 5000, 5.0


async def post_all(settings: Settings, app: str, sends: list[tuple[str, str]], batch: int, concurrency: int,
                   rate: float = 0) -> float:
    """Post a delivered receipt for every (message, token), at `rate` receipts/s (0: as fast as the gateway takes
    them); the seconds until the last was acknowledged."""
    key = signing.sdk_key(signing.load_key(settings.receipt_key_file), app)
    url = f"{settings.gateway_url}/v1/sdk/{app}/events"
    now = int(time.time() * 1000)
    bodies = [{"events": [{"msg_id": msg_id, "token": token, "kind": "delivered", "ts": now}
                          for msg_id, token in sends[start:start + batch]]} for start in range(0, len(sends), batch)]
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            while not queue.empty():
                n = len(bodies) - queue.qsize()  # the body's place: sent no sooner than the rate allows
                body = queue.get_nowait()
                if rate:
                    await asyncio.sleep(max(0.0, started + n * batch / rate - time.monotonic()))
                answer = await client.post(url, json=body, headers={"x-pushpipe-key": key})
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


def lifecycle_count(settings: Settings, app: str, state: str) -> int:
    ch = clickhouse.connect(settings, create=False)
    try:
        rows = ch.rows(f"SELECT count() AS n FROM {settings.clickhouse_database}.lifecycle_events "
                       f"WHERE app_id = '{app}' AND state = '{state}'")
        return int(rows[0]["n"])
    finally:
        ch.close()


def sent_broadcasts(settings: Settings, app: str, devices: int, messages: int) -> list[tuple[str, str]]:
    """Register the devices, broadcast to them, wait until every token is accepted: the (message, token) pairs.
    The simulated HMS devices send no receipts of their own meanwhile: the benchmark's are the only ones."""
    admin = SimulatorAdmin(settings.simulator_admin_url)
    admin.configure(vendor="hms", delivery_rate=0.0)
    try:
        return _sent_broadcasts(settings, app, devices, messages)
    finally:
        admin.reset(records=False)


def _sent_broadcasts(settings: Settings, app: str, devices: int, messages: int) -> list[tuple[str, str]]:
    producer, run = PushProducer(settings), uuid.uuid4().hex[:8]
    tokens = [f"{run}{n:08x}IQAAAACy" + "x" * 40 for n in range(devices)]  # HMS-shaped
    for n, token in enumerate(tokens):
        producer.device_event(device_event(app, f"u{n}", token, vendor="hms"))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=600)
    pushes = [push_request(app, [], "Receipts bench", f"#{n}", target="broadcast") for n in range(messages)]
    for push in pushes:
        producer.request(push)
    producer.flush()
    observe.wait_for(lambda: lifecycle_count(settings, app, "accepted") >= devices * messages, 600,
                     "every token accepted and in ClickHouse", interval_s=2.0)
    return [(push["msg_id"], token) for push in pushes for token in tokens]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=5, help="broadcasts, each to every device")
    parser.add_argument("--batch", type=int, default=100, help="events per SDK upload")
    parser.add_argument("--concurrency", type=int, default=16, help="uploads in flight")
    parser.add_argument("--rate", type=float, default=0, help="receipts/s to post at (0: as fast as the gateway takes them)")
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    app = f"bench-{uuid.uuid4().hex[:8]}"
    sends = sent_broadcasts(settings, app, args.devices, args.messages)
    with CpuMeter(settings) as cpu:
        seconds = asyncio.run(post_all(settings, app, sends, args.batch, args.concurrency, args.rate))
        acknowledged = time.monotonic()
        observe.wait_for(lambda: lifecycle_count(settings, app, "delivered") >= len(sends), 600,
                         "ClickHouse to count every receipt", interval_s=0.2)
        lag = time.monotonic() - acknowledged
    rate = len(sends) / seconds
    print(f"\n{len(sends):,} delivered receipts ({args.messages} broadcasts to {args.devices:,} devices) in uploads of "
          f"{args.batch}, {args.concurrency} in flight")
    posted = f" (posted at {args.rate:,.0f}/s)" if args.rate else ""
    print(f"  gateway: {rate:,.0f} receipts/s acknowledged{posted} (goal {GOAL_PER_S:,}/s) in {seconds:.1f} s")
    print(f"  ClickHouse's lifecycle counted the last of them {lag:.1f} s after it was acknowledged (goal {GOAL_LAG_S:.0f} s)")
    print(cpu.table(per=len(sends), unit="receipt"))


if __name__ == "__main__":
    main()
