"""What stream health costs the pipeline: bench/e2e.py with the jobs' metrics on and off, in turns.

Each round restarts the jobs (and the supervisor, which starts them) with PUSHPIPE_STAGE_METRICS on or off
(Flink's Prometheus reporter and the operators' business counters), runs the single-pin benchmark, and reads
its pipeline CPU per request; Prometheus, the Pushgateway and Alertmanager are shown apart. Rounds alternate
(on, off, on, off, ...) so the machine's drift falls on both; the ratio of the medians is the overhead.

    .venv/bin/python -m bench.overhead --rounds 2 --requests 2000
"""
from __future__ import annotations

import argparse
import statistics
import sys

from bench import e2e
from bench.restart import restart_jobs
from pushpipe.config import load
from pushpipe.infra import stack

MONITORING = ("prometheus", "pushgateway", "alertmanager", "supervisor")


def restart_metrics(metrics: bool) -> None:
    """The supervisor and the jobs again, with the jobs' metrics on or off (the rest of the stack stays up)."""
    restart_jobs(PUSHPIPE_STAGE_METRICS="true" if metrics else "false")


def cpu_per_request(requests: int) -> dict[str, float]:
    """Component -> CPU µs per request over one bench/e2e.py run."""
    cpu, _ = e2e.measure(load(), 3000, 3, requests, 0)
    return {name: seconds / requests * 1e6 for name, seconds in cpu.spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (metrics on, then off)")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for n in range(args.rounds):
        for metrics in (True, False):
            restart_metrics(metrics)
            runs[metrics].append(cpu_per_request(args.requests))
            total = sum(runs[metrics][-1].values())
            print(f"[overhead] round {n + 1}, metrics {'on' if metrics else 'off'}: {total:,.0f} µs per request", file=sys.stderr)
    restart_metrics(True)
    names = sorted({name for figures in runs[True] + runs[False] for name in figures})
    print(f"\nbench/overhead.py: CPU µs per request (median of {args.rounds}), bench/e2e.py with {args.requests} requests")
    rows = []
    for name in names:
        on = statistics.median(f.get(name, 0.0) for f in runs[True])
        off = statistics.median(f.get(name, 0.0) for f in runs[False])
        rows.append((name + (" (monitoring)" if name in MONITORING else ""), f"{on:,.0f}", f"{off:,.0f}", f"{on - off:+,.0f}"))
    print(stack.format_table(("component", "metrics on", "metrics off", "difference"), rows))


if __name__ == "__main__":
    main()
