"""Receipts through the real receipt gateway into ClickHouse (`pushpipe up` first, or it starts it).

Posts N receipts as an app's SDK would (batches of --batch events, --concurrency uploads in flight), and
prints: receipts/s acknowledged by the gateway (each answer waits for Kafka's acks=all), seconds from the
last acknowledgement until ClickHouse counts them all, and CPU per receipt for each component.
Goal (issue 13): 5,000 receipts/s, each counted in ClickHouse within 5 s.

    .venv/bin/python -m bench.receipts --receipts 50000
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
from pushpipe.sinks import clickhouse

GOAL_PER_S, GOAL_LAG_S = 5000, 5.0


async def post_all(settings: Settings, app: str, receipts: int, batch: int, concurrency: int) -> float:
    """Post every receipt; the seconds it took until the last was acknowledged."""
    key = signing.sdk_key(signing.load_key(settings.receipt_key_file), app)
    url = f"{settings.gateway_url}/v1/sdk/{app}/events"
    bodies = [{"events": [{"msg_id": f"m{n // 1000}", "token": f"t{n}", "kind": "opened", "ts": int(time.time() * 1000)}
                          for n in range(start, min(receipts, start + batch))]} for start in range(0, receipts, batch)]
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                answer = await client.post(url, json=body, headers={"x-pushpipe-key": key})
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


def counted(settings: Settings, app: str) -> int:
    ch = clickhouse.connect(settings, create=False)
    try:
        rows = ch.rows(f"SELECT count() AS n FROM {settings.clickhouse_database}.receipts WHERE app_id = '{app}'")
        return int(rows[0]["n"])
    finally:
        ch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100, help="events per SDK upload")
    parser.add_argument("--concurrency", type=int, default=16, help="uploads in flight")
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    app = f"bench-{uuid.uuid4().hex[:8]}"
    with CpuMeter(settings) as cpu:
        seconds = asyncio.run(post_all(settings, app, args.receipts, args.batch, args.concurrency))
        acknowledged = time.monotonic()
        observe.wait_for(lambda: counted(settings, app) >= args.receipts, 300, "ClickHouse to count every receipt")
        lag = time.monotonic() - acknowledged
    rate = args.receipts / seconds
    print(f"\n{args.receipts:,} receipts in uploads of {args.batch}, {args.concurrency} in flight")
    print(f"  gateway: {rate:,.0f} receipts/s acknowledged (goal {GOAL_PER_S:,}/s) in {seconds:.1f} s")
    print(f"  ClickHouse counted the last of them {lag:.1f} s after it was acknowledged (goal {GOAL_LAG_S:.0f} s)")
    print(cpu.table(per=args.receipts, unit="receipt"))


if __name__ == "__main__":
    main()
