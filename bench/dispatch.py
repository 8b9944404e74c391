"""Dispatch under faults through the real stack: a 5% 429 rate on every vendor and a 30 s outage of one.

Users have an APNs and an HMS device (with a Umeng fallback token); each user gets one push.
HMS goes down for 30 s while the pushes flow. Prints tokens/s accepted, p50/p99 produce->accept
latency, retries, tokens that went through the fallback, lost and duplicate sends.

    .venv/bin/python -m bench.dispatch --users 2000
"""
from __future__ import annotations

import argparse
import re
import time
import uuid

import httpx

from bench.e2e import percentile
from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request

VENDORS = ("apns", "hms")
OUTAGE_VENDOR = "hms"


def tokens_for(run: str, u: int) -> dict[str, str]:
    return {"apns": f"{run}{u:07x}".ljust(64, "d"), "hms": f"{run}h{u:07x}IQAAAACy" + "x" * 60,
            "umeng": f"{run}m{u:07x}" + "u" * 36}


def register(producer: PushProducer, settings: Settings, app: str, run: str, users: int) -> None:
    for u in range(users):
        t = tokens_for(run, u)
        producer.device_event(device_event(app, f"{run}-{u}", t["apns"], vendor="apns"))
        producer.device_event(device_event(app, f"{run}-{u}", t["hms"], vendor="hms", fallback_token=t["umeng"]))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=600)


def _metrics(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return None


def metric_sum(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--throttle-rate", type=float, default=0.05)
    parser.add_argument("--outage-s", type=float, default=30)
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    admin = SimulatorAdmin(settings.simulator_admin_url, timeout_s=60)
    run, app = uuid.uuid4().hex[:8], "bench-faults"
    producer = PushProducer(settings)
    register(producer, settings, app, run, args.users)
    metrics_url = f"http://127.0.0.1:{settings.dispatch_metrics_port}/metrics"
    before = _metrics(metrics_url) or ""  # served once the worker has seen its first batch

    for vendor in (*VENDORS, "umeng"):
        admin.configure(vendor=vendor, throttle_rate=args.throttle_rate, retry_after_s=1)
    created: dict[int, int] = {}
    t0 = time.time()
    for u in range(args.users):
        request = push_request(app, [f"{run}-{u}"], "Bench", "faults")
        created[u] = request["created_at"]
        producer.request(request)
        if u == args.users // 10:
            admin.configure(vendor=OUTAGE_VENDOR, outage_s=args.outage_s)
    producer.flush()
    try:
        def delivered() -> int:
            return sum(admin.accepted(run, vendor=v)["unique"] for v in (*VENDORS, "umeng"))

        observe.wait_for(lambda: delivered() >= 2 * args.users, 1800, "every user's two devices")
        time.sleep(3)
    finally:
        for vendor in (*VENDORS, "umeng"):
            admin.configure(vendor=vendor, throttle_rate=0.0, outage=False)
    report(admin, run, args, created, t0, before, _metrics(metrics_url) or "")


def report(admin: SimulatorAdmin, run: str, args: argparse.Namespace, created: dict[int, int], t0: float,
           before: str, after: str) -> None:
    records = {v: admin.accepted(run, payloads=True, vendor=v) for v in (*VENDORS, "umeng")}
    latencies, last = [], t0
    for rec in records.values():
        for r in rec.get("records", []):
            user = int(re.search(rf"{run}[hm]?([0-9a-f]{{7}})", r["token"]).group(1), 16)
            latencies.append(r["at"] * 1000 - created[user])
            last = max(last, r["at"])
    count = sum(r["count"] for r in records.values())
    unique = sum(r["unique"] for r in records.values())
    retried = metric_sum(after, "pushpipe_dispatch_retries_total") - metric_sum(before, "pushpipe_dispatch_retries_total")
    print(f"\nbench/dispatch.py: {args.users} users x 2 devices (APNs + HMS), {args.throttle_rate:.0%} 429s everywhere, "
          f"{OUTAGE_VENDOR} down for {args.outage_s:.0f}s")
    print(stack.format_table(("figure", "value"), [
        ("tokens/s accepted", f"{unique / (last - t0):,.0f}"),
        ("p50 produce->accept latency", f"{percentile(latencies, 50):,.0f} ms"),
        ("p99 produce->accept latency", f"{percentile(latencies, 99):,.0f} ms"),
        ("tokens retried", f"{retried:,.0f}"),
        ("tokens sent through the Umeng fallback", f"{records['umeng']['unique']:,}"),
        ("lost", f"{2 * args.users - unique:,}"),
        ("duplicate sends", f"{count - unique:,}"),
    ]))


if __name__ == "__main__":
    main()
