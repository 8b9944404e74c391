"""The jobs embedded and on the Flink cluster, one after another on one stack: the broadcast and single-pin benchmarks
in each mode, their throughput and CPU, and the cluster's overhead against the embedded mode.

Each mode restarts the jobs (and the supervisor) with PUSHPIPE_FLINK_MODE and PUSHPIPE_FLINK_PARALLELISM set; Kafka,
Elasticsearch, ClickHouse and the simulators stay up (one broker: the figures compare Flink's two modes). Every mode
registers devices of its own, then sends one broadcast (bench/broadcast.py) and a paced single-pin stream
(bench/e2e.py, one APNs device per pin). The stack is left in the embedded mode.

    .venv/bin/python -m bench.cluster                                  # embedded, cluster p=1, cluster p=2
    .venv/bin/python -m bench.cluster --devices 100000 --requests 3000 --rate 50
"""
from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass

from bench import broadcast, e2e
from bench.restart import restart_jobs
from pushpipe.config import Settings
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer

MODES = (("embedded", 1), ("cluster", 1), ("cluster", 2))
FLINK_PREFIXES = ("job-", "flink-")  # the Flink side in the CPU tables: embedded jobs, the cluster's processes


@dataclass(frozen=True)
class ModeRun:
    mode: str
    parallelism: int
    broadcast: broadcast.Broadcast
    single: e2e.SinglePin

    @property
    def label(self) -> str:
        return label(self.mode, self.parallelism)


def label(mode: str, parallelism: int) -> str:
    return "embedded" if mode == "embedded" else f"cluster p={parallelism}"


def switch(mode: str, parallelism: int) -> Settings:
    """The jobs (and any Flink cluster) started again in `mode` at `parallelism`; the rest stays up."""
    return restart_jobs(PUSHPIPE_FLINK_MODE=mode, PUSHPIPE_FLINK_PARALLELISM=str(parallelism))


def run_mode(mode: str, parallelism: int, devices: int, requests: int, rate: float) -> ModeRun:
    settings = switch(mode, parallelism)
    name = label(mode, parallelism)
    say(f"{name}: registering {devices:,} HMS devices")
    app = f"bench-broadcast-{uuid.uuid4().hex[:8]}"
    run = app.rsplit("-", 1)[1]
    producer = PushProducer(settings)
    broadcast.register(settings, producer, app, run, devices)
    say(f"{name}: the broadcast")
    sent = broadcast.send_broadcast(settings, producer, SimulatorAdmin(settings.simulator_admin_url, timeout_s=120), app, run,
                                    devices, 1)
    say(f"{name}: {requests} single-pin requests at {rate:g}/s")
    single = e2e.run_single_pin(settings, requests, 1, requests, rate)
    return ModeRun(mode, parallelism, sent, single)


def flink_share(spent: dict[str, float]) -> float:
    return sum(seconds for name, seconds in spent.items() if name.startswith(FLINK_PREFIXES))


def per_token(done: ModeRun, devices: int) -> float:
    return sum(done.broadcast.delivery.spent.values()) / devices * 1e6


def per_request(done: ModeRun, requests: int) -> float:
    return sum(done.single.cpu.spent.values()) / requests * 1e6


def rows(runs: list[ModeRun], devices: int, requests: int) -> list[tuple[str, ...]]:
    """One line per mode; the ratios are against the first mode's (embedded)."""
    base_token, base_request = per_token(runs[0], devices), per_request(runs[0], requests)
    return [(done.label,
             f"{done.broadcast.accepted_s:.1f} s", f"{devices / done.broadcast.accepted_s:,.0f}",
             f"{per_token(done, devices):,.0f} µs ({flink_share(done.broadcast.delivery.spent) / devices * 1e6:,.0f})",
             f"{per_token(done, devices) / base_token:.2f}x",
             f"{done.single.tokens_per_s:,.0f}", f"{done.single.p50_ms:,.0f} / {done.single.p99_ms:,.0f} ms",
             f"{per_request(done, requests):,.0f} µs ({flink_share(done.single.cpu.spent) / requests * 1e6:,.0f})",
             f"{per_request(done, requests) / base_request:.2f}x") for done in runs]


HEADER = ("mode", "broadcast: all accepted", "tokens/s", "CPU per token (Flink)", "vs embedded",
          "single-pin: accepted/s", "p50 / p99", "CPU per request (Flink)", "vs embedded")


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20_000, help="HMS devices each mode's broadcast reaches")
    parser.add_argument("--requests", type=int, default=1500, help="single-pin APNs requests in each mode")
    parser.add_argument("--rate", type=float, default=50, help="single-pin requests per second")
    args = parser.parse_args()
    runs = []
    try:
        for mode, parallelism in MODES:
            runs.append(run_mode(mode, parallelism, args.devices, args.requests, args.rate))
    finally:
        switch("embedded", 1)
    print(f"\nbench/cluster.py: a {args.devices:,}-device HMS broadcast and {args.requests:,} single-pin APNs requests at "
          f"{args.rate:g}/s in each mode; CPU of every component until the last accept (Flink's part in brackets)")
    print(stack.format_table(HEADER, rows(runs, args.devices, args.requests)))


if __name__ == "__main__":
    main()
