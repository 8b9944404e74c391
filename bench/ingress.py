"""Single pushes through the HTTP send API (ingress/api.py): requests/s, latency and CPU per request.

    .venv/bin/python -m bench.ingress                      # the running stack's API (`pushpipe up`), Kafka beside it
    .venv/bin/python -m bench.ingress --noop               # the API app alone, Kafka's acknowledgement a no-op: checks the bench
    .venv/bin/python -m bench.ingress --load wrk --concurrency 32   # Debian's wrk in a closed loop instead (it cannot pace)

Against the stack it registers an app of its own (a rate far above the load) and sends single pushes to pins
without devices (fan-out counts them as such: what is measured is the API and Kafka's acks=all). Each request is
POST /v1/apps/<app>/push with a new Idempotency-Key, paced at --rate from a process of its own (bench/httpload.py:
keep-alive connections, latency from when each request was due). Prints requests/s answered 202, p50/p99/p999 in
ms, the other answers, and the CPU per request of the API's process tree (and, on the stack, of Kafka's).
Goal (issue 16): 5,000 single sends/s with p99 <= 20 ms, Kafka beside it. On the stack the three Flink jobs and
their supervisor are paused (SIGSTOP) while it measures, and resumed after (--jobs running leaves them be): on two
cores the fan-out of 5,000 requests/s would otherwise take the cores the API is measured on, and what it costs is
issue 18's benchmarks' business. The jobs stay paused at most ~35 s (--seconds <= 30), less than Flink's heartbeat timeout.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.asgi_choice import tree_cpu
from bench.httpload import drive, json_request
from pushpipe import observe
from pushpipe.config import Settings, load
from pushpipe.infra import process
from pushpipe.infra.jobs import all_jobs

GOAL_PER_S, GOAL_P99_MS = 5000, 20.0
RESUME_SUPERVISOR_AFTER_S = 10.0
MAX_PAUSED_S = 30.0  # the measured phase with the jobs paused (plus a 3 s warm-up)
NOOP_APP, NOOP_SECRET = "bench-noop", "bench-noop-secret"
BODY = {"target": "pin", "pins": ["bench-user"], "notification": {"title": "Your order shipped", "body": "Arriving Tuesday"},
        "category": "transactional", "ttl_s": 600}


class NoopOutbox:
    """Kafka's acknowledgement at once."""

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        return None

    def close(self) -> None:
        pass


class NoMessages:
    async def message(self, app_id: str, msg_id: str) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        pass


def serve_noop(port: int) -> None:
    from pushpipe.ingress import api, asgi
    from pushpipe.ingress.apps import hash_secret
    from pushpipe.schemas.apps import App, MemoryApps

    apps = MemoryApps([App(NOOP_APP, hash_secret(NOOP_SECRET), "salt", rate_per_s=1e6)])
    server = api.create(load(), apps, NoopOutbox(), NoMessages())
    asgi.serve(server, "127.0.0.1", port)


def drive_once(url: str, app: str, secret: str, run: str, seconds: float, concurrency: int, rate: float) -> None:
    headers = {"X-Pushpipe-App": app, "Authorization": f"Bearer {secret}"}

    def push(number: int) -> tuple[str, dict[str, str], bytes]:
        return json_request(f"/v1/apps/{app}/push", {**headers, "Idempotency-Key": f"{run}-{number}"}, BODY)

    print(json.dumps(drive(url, push, concurrency, seconds, rate).summary()))


def stack_app(settings: Settings, run: str) -> tuple[str, str]:
    """A new app for this run, once the API has read it."""
    import httpx

    from pushpipe.ingress.apps import KafkaApps, Registry

    store = KafkaApps(settings)
    try:
        store.follower.wait_loaded(30)
        app, secret = Registry(store).create(f"bench-{run}", rate_per_s=1e6)
    finally:
        store.close()
    headers = {"X-Pushpipe-App": app.app_id, "Authorization": f"Bearer {secret}"}
    deadline = time.monotonic() + 30
    while httpx.get(f"{settings.api_url}/v1/apps/{app.app_id}/messages/none", headers=headers, timeout=5).status_code == 401:
        if time.monotonic() > deadline:
            raise TimeoutError("the API did not learn the bench's app within 30 s")
        time.sleep(0.2)
    return app.app_id, secret


@contextlib.contextmanager
def paused(settings: Settings, pause: bool) -> Iterator[list[str]]:
    """The Flink jobs and the supervisor (which would restart a job it finds stopped) stopped with SIGSTOP, then resumed."""
    names = ["supervisor", *(job.name for job in all_jobs())] if pause else []
    pids = [pid for name in names if (leader := process.read_pid(settings, name)) is not None
            for pid in (leader, *process.descendants(leader))]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield [name for name in names if process.read_pid(settings, name) is not None]
    finally:
        for pid in reversed(pids):
            if pid == pids[0]:  # the supervisor, once the operator calls the pause caught mid-way have ended (it would
                time.sleep(RESUME_SUPERVISOR_AFTER_S)  # take one for a hung call and restart its job)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def wait_drained(settings: Settings) -> None:
    """Wait until fan-out has taken the bench's pushes and analytics their results, so that what runs next on the
    stack (a test, another benchmark) does not queue behind them; the backlog is shown as it shrinks."""
    for group, topic in (("pushpipe-fanout", settings.topics.requests), ("pushpipe-analytics", settings.topics.results)):
        def backlog(group: str = group, topic: str = topic) -> bool:
            lag = observe.group_lag(settings, group, topic)
            print(f"\r  {group}: {lag if lag is not None else '?':>8} records of {topic} to go", end="", flush=True)
            return lag == 0
        observe.wait_for(backlog, 1800, f"{group} to take the bench's records on {topic}", interval_s=2)
        print()


def run_phase(url: str, app: str, secret: str, run: str, seconds: float, concurrency: int, rate: float,
              measured: dict[str, int], wrk: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    before = {name: tree_cpu(pid) for name, pid in measured.items()}
    if wrk:
        figures = wrk_once(url, app, secret, seconds, concurrency)
    else:
        out = subprocess.run([sys.executable, "-m", "bench.ingress", "drive", url, app, secret, run, str(seconds), str(concurrency), str(rate)],
                             check=True, capture_output=True, text=True).stdout
        figures = json.loads(out)
    return figures, {name: tree_cpu(pid) - before[name] for name, pid in measured.items()}


def wrk_once(url: str, app: str, secret: str, seconds: float, connections: int) -> dict[str, Any]:
    """Debian's wrk in a closed loop (it cannot pace): each connection sends its next push when the last was answered,
    without an Idempotency-Key (each push a new msg id). Its latencies count from each request's sending."""
    script = f"""wrk.method = "POST"
wrk.path = "/v1/apps/{app}/push"
wrk.body = '{json.dumps(BODY)}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Pushpipe-App"] = "{app}"
wrk.headers["Authorization"] = "Bearer {secret}"
done = function(summary, latency, requests)
  io.write(string.format("JSON {{\\"requests\\": %d, \\"seconds\\": %f, \\"non2xx\\": %d, \\"errors\\": %d, "
    .. "\\"p50_ms\\": %f, \\"p99_ms\\": %f, \\"p999_ms\\": %f}}\\n",
    summary.requests, summary.duration / 1e6, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:  # the secret stays out of the process list
        lua.write(script)
        lua.flush()
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", lua.name, url],
                             check=True, capture_output=True, text=True).stdout
    found = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
    found["statuses"] = {"202": found["requests"] - found.pop("non2xx")}
    found["errors"] = {"errors": found.pop("errors")} if found["errors"] else {}
    return found


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve-noop":
        serve_noop(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "drive":
        url, app, secret, run, seconds, concurrency, rate = sys.argv[2:9]
        drive_once(url, app, secret, run, float(seconds), int(concurrency), float(rate))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_PER_S, help="pushes/s offered (0: as fast as it answers)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=128, help="connections (each with one request in flight)")
    parser.add_argument("--noop", action="store_true", help="serve the API app here with a no-op Kafka, not the stack's")
    parser.add_argument("--port", type=int, default=18972, help="--noop: the port to serve on (loopback)")
    parser.add_argument("--load", choices=("paced", "wrk"), default="paced",
                        help="paced: bench/httpload.py at --rate; wrk: Debian's wrk in a closed loop over --concurrency connections")
    parser.add_argument("--jobs", choices=("paused", "running"), default="paused",
                        help="the stack's Flink jobs while measuring (paused: the API and Kafka have the cores)")
    args = parser.parse_args()
    if not args.noop and args.jobs == "paused" and args.seconds > MAX_PAUSED_S:
        parser.error(f"with the jobs paused, measure at most {MAX_PAUSED_S:g} s (Flink's heartbeat timeout is 50 s), or add --jobs running")
    settings, run = load(), uuid.uuid4().hex[:8]
    server = None
    if args.noop:
        url, app, secret = f"http://127.0.0.1:{args.port}", NOOP_APP, NOOP_SECRET
        server = subprocess.Popen([sys.executable, "-m", "bench.ingress", "serve-noop", str(args.port)], start_new_session=True)
        measured = {"send-api": server.pid}
        time.sleep(3)
    else:
        url = settings.api_url
        app, secret = stack_app(settings, run)
        measured = {name: pid for name in ("ingress", "kafka") if (pid := process.read_pid(settings, name)) is not None}
    try:
        with paused(settings, not args.noop and args.jobs == "paused") as stopped:
            run_phase(url, app, secret, f"{run}-warm", 3, args.concurrency, min(args.rate, 1000) if args.rate else 0, measured)
            figures, cpu = run_phase(url, app, secret, run, args.seconds, args.concurrency, args.rate, measured, wrk=args.load == "wrk")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
    accepted = figures["statuses"].get("202", 0)
    offered = f"offered {args.rate:,.0f}/s" if args.load == "paced" else "wrk's closed loop"
    print(f"{offered} for {args.seconds:g} s over {args.concurrency} connections to {url}"
          + (f"; paused meanwhile: {', '.join(stopped)}" if stopped else ""))
    print(f"answered 202: {accepted / figures['seconds']:,.0f}/s ({accepted:,}); others: {figures['statuses']} {figures['errors']}")
    print(f"latency ms: p50 {figures['p50_ms']:.2f}  p99 {figures['p99_ms']:.2f}  p999 {figures['p999_ms']:.2f}")
    for name, seconds in cpu.items():
        print(f"CPU {name}: {seconds:.1f} s, {seconds / max(1, figures['requests']) * 1e6:,.0f} µs per request")
    met = accepted / figures["seconds"] >= GOAL_PER_S * 0.98 and figures["p99_ms"] <= GOAL_P99_MS
    print(f"goal {GOAL_PER_S:,}/s with p99 <= {GOAL_P99_MS:g} ms: {'met' if met else 'NOT met'}")
    if not args.noop:
        print("the pipeline takes the pushes it was sent (they waited on Kafka while the jobs were paused):")
        wait_drained(settings)


if __name__ == "__main__":
    main()
