"""End-to-end benchmark through the real stack (`pushpipe up` first, or it starts it).

Registers N devices (--per-user per user), sends M single-user requests, as fast as one
producer can or paced at --rate requests/s, and prints: requests/s produced, tokens/s accepted
by the vendor simulator, p50/p99 produce->accept latency per token, and seconds until
ClickHouse shows every count.

    .venv/bin/python -m bench.e2e --devices 3000 --requests 2000
    .venv/bin/python -m bench.e2e --devices 3000 --per-user 1 --requests 6000 --rate 100   # a sustained single-pin load
    .venv/bin/python -m bench.e2e --per-user 1 --rate 300 --requests 3000 --rounds 2   # round 1 warms jobs just restarted

Each round registers devices of its own and prints its figures: after a restart (bench.compare --restart-jobs) the
first round measures the jobs' warm-up (JIT compilation, first checkpoints) as much as the pipeline.
"""
from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass

from bench.cpu import CpuMeter
from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request

TICK_S = 0.01  # paced production: rate/100 requests every 10 ms


def register(producer: PushProducer, settings: Settings, app: str, run: str, users: int, per_user: int) -> None:
    for u in range(users):
        for d in range(per_user):
            producer.device_event(device_event(app, f"{run}-{u}", f"{run}{u:07x}{d:x}".ljust(64, "b")))
    producer.flush()
    observe.wait_fanout_read(settings, timeout_s=300)


def produce(producer: PushProducer, app: str, run: str, users: int, requests: int, rate: float) -> tuple[dict[str, int], float]:
    """Produce the requests (paced at `rate`/s unless 0); msg_id -> created_at, and the seconds it took."""
    created: dict[str, int] = {}
    started = time.monotonic()
    for i in range(requests):
        request = push_request(app, [f"{run}-{i % users}"], "Bench", f"request {i}", campaign=f"bench-{run}")
        created[request["msg_id"]] = request["created_at"]
        producer.request(request)
        if rate and i % max(1, int(rate * TICK_S)) == 0:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    return created, time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@dataclass(frozen=True)
class SinglePin:
    """One run's figures: what was sent, how fast it was accepted, and the CPU each component spent until then."""
    requests: int
    tokens: int
    produce_s: float
    accept_span_s: float
    p50_ms: float
    p99_ms: float
    counted_s: float
    cpu: CpuMeter

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.accept_span_s

    def figures(self) -> list[tuple[str, str]]:
        return [
            ("requests/s produced", f"{self.requests / self.produce_s:,.0f}"),
            ("tokens/s accepted by the simulator", f"{self.tokens_per_s:,.0f}"),
            ("p50 produce->accept latency", f"{self.p50_ms:,.0f} ms"),
            ("p99 produce->accept latency", f"{self.p99_ms:,.0f} ms"),
            ("seconds until ClickHouse shows the counts", f"{self.counted_s:.1f} s"),
        ]


def run_single_pin(settings: Settings, devices: int, per_user: int, requests: int, rate: float) -> SinglePin:
    """Register the devices, send the requests; measured until the last token was accepted and ClickHouse counted all."""
    run, app = uuid.uuid4().hex[:8], "bench-app"
    users = max(1, devices // per_user)
    producer = PushProducer(settings)
    register(producer, settings, app, run, users, per_user)

    t0 = time.time()
    expected = requests * per_user
    admin = SimulatorAdmin(settings.simulator_admin_url, timeout_s=60)
    with CpuMeter(settings) as cpu:
        created, produce_s = produce(producer, app, run, users, requests, rate)
        observe.wait_for(lambda: admin.accepted(run, tokens=False)["count"] >= expected, 3600, f"{expected} accepted tokens")
    records = admin.accepted(run, payloads=True)["records"]
    latencies = [r["at"] * 1000 - created[r["payload"]["msg_id"]] for r in records]
    observe.wait_campaign_counted(settings, f"bench-{run}", expected, 600)
    return SinglePin(requests, expected, produce_s, max(r["at"] for r in records) - t0, percentile(latencies, 50),
                     percentile(latencies, 99), time.time() - t0, cpu)


def measure(settings: Settings, devices: int, per_user: int, requests: int, rate: float) -> tuple[CpuMeter, list[tuple[str, str]]]:
    """Register the devices, send the requests; the CPU each component spent until the last token was accepted,
    and the figures."""
    done = run_single_pin(settings, devices, per_user, requests, rate)
    return done.cpu, done.figures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3000)
    parser.add_argument("--per-user", type=int, default=3, help="devices per user")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0, help="requests/s to produce at (0: as fast as possible)")
    parser.add_argument("--rounds", type=int, default=1, help="runs one after another, each printed")
    args = parser.parse_args()
    settings = load()
    stack.up(settings)
    for n in range(1, args.rounds + 1):
        cpu, figures = measure(settings, args.devices, args.per_user, args.requests, args.rate)
        print(f"\nCPU spent from the first request until the last token was accepted:\n{cpu.table(args.requests, 'request')}")
        users = max(1, args.devices // args.per_user)
        print(f"\nbench/e2e.py: {users * args.per_user} devices, {args.requests} single-user requests, "
              f"{args.requests * args.per_user} tokens (APNs simulator), round {n} of {args.rounds}")
        print(stack.format_table(("figure", "value"), figures))


if __name__ == "__main__":
    main()
