"""A small HTTP/1.1 load driver for benchmarks: keep-alive connections on uvloop, one request in flight on each.

Written on asyncio's protocols (callbacks, no task or timer per request) because a general client is slower than the
servers it measures (httpx spends ~200 µs of CPU a request; the stream-based driver this replaced ~100 µs, and it
stalled: at 5,000/s its p99 was 30-80 ms against a server that answered wrk within 3 ms). Debian's `wrk` (installed by
`make setup`) measures the closed loop as a cross-check, but it cannot pace requests.
Run it in a process of its own, so that its CPU is not the server's.

Two ways to drive:
- closed loop (`rate` 0): each connection sends its next request as soon as the answer came, the most a server takes;
- paced (`rate` > 0): request i is due at start + i / rate; a tick every TICK_S sends the requests due by then on
  idle connections (queued until one is free), and each latency counts from when the request was due, not from when it
  went out: a server that stalls is charged for the requests that waited behind the stall (no "coordinated
  omission"). The tick adds up to TICK_S to a latency.
Requests that get no answer within `timeout_s`, or whose connection fails, count as errors (the connection is reopened).
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

RequestMaker = Callable[[int], tuple[str, dict[str, str], bytes]]  # request number -> (path, headers, body)
TICK_S = 0.001  # libuv counts timers in whole milliseconds: a shorter sleep would spin
SWEEP_S = 0.2


@dataclass
class Figures:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict[str, object]:
        return {"requests": self.done, "seconds": round(self.seconds, 3), "per_s": round(self.done / self.seconds, 1) if self.seconds else 0,
                "p50_ms": round(self.percentile(50), 3), "p99_ms": round(self.percentile(99), 3), "p999_ms": round(self.percentile(99.9), 3),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "errors": dict(self.errors)}


def raw_request(host: str, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, reads its answer (a Content-Length body), tells the driver."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = self.sent = 0.0  # of the request in flight; 0 when idle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due, self.sent = due, time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or not self.due:
            return
        head = bytes(self.buffer[:end]).lower()
        if b"\r\ntransfer-encoding: chunked" in head:
            self.fail("ValueError")  # chunked answers are not read by this driver
            return
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        status, due = int(head[9:12]), self.due
        del self.buffer[:end + 4 + length]
        self.due = self.sent = 0.0
        self.driver.answered(self, status, due)

    def fail(self, error: str) -> None:
        """Drop the connection; the request in flight, if any, counts as `error`."""
        in_flight, self.due, self.sent = bool(self.due), 0.0, 0.0
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        self.driver.lost(self, error if in_flight else None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:  # not dropped by fail()
            self.transport = None
            self.fail("ConnectionLost")


class Driver:
    def __init__(self, host: str, port: int, make: RequestMaker, rate: float, timeout_s: float) -> None:
        self.host, self.port, self.make, self.rate, self.timeout_s = host, port, make, rate, timeout_s
        self.figures = Figures()
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiting: collections.deque[float] = collections.deque()  # due times of requests no connection was free for
        self.connections: list[Connection] = []
        self.number = 0
        self.start = self.deadline = 0.0
        self.total = 0  # paced: the requests due before the deadline

    async def open(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        self.connections.append(connection)
        return connection

    def request(self, connection: Connection, due: float) -> None:
        path, headers, body = self.make(self.number)
        self.number += 1
        connection.send(raw_request(f"{self.host}:{self.port}", "POST", path, headers, body), due)

    def answered(self, connection: Connection, status: int, due: float) -> None:
        now = time.perf_counter()
        self.figures.latencies_ms.append((now - due) * 1000)
        self.figures.statuses[status] += 1
        self.next(connection, now)

    def lost(self, connection: Connection, error: str | None) -> None:
        if error:
            self.figures.errors[error] += 1
        if connection in self.connections:
            self.connections.remove(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if time.perf_counter() < self.deadline:
            asyncio.get_running_loop().create_task(self.reopen())

    async def reopen(self) -> None:
        try:
            self.next(await asyncio.wait_for(self.open(), self.timeout_s), time.perf_counter())
        except (TimeoutError, OSError) as failed:
            self.figures.errors[type(failed).__name__] += 1

    def next(self, connection: Connection, now: float) -> None:
        """Give a free connection its next request: closed loop, the next one; paced, the oldest one waiting."""
        if now >= self.deadline:
            return
        if not self.rate:
            self.request(connection, now)
        elif self.waiting:
            self.request(connection, self.waiting.popleft())
        else:
            self.idle.append(connection)

    def tick(self, now: float) -> None:
        """Paced: send every request due by now, on idle connections or queued for the next free one."""
        due_count = min(int((now - self.start) * self.rate) + 1, self.total)
        while self.number + len(self.waiting) < due_count:
            due = self.start + (self.number + len(self.waiting)) / self.rate
            if self.idle and not self.waiting:
                self.request(self.idle.popleft(), due)
            else:
                self.waiting.append(due)
        while self.waiting and self.idle:
            self.request(self.idle.popleft(), self.waiting.popleft())

    def sweep(self, now: float) -> None:
        for connection in list(self.connections):
            if connection.sent and now - connection.sent > self.timeout_s:
                connection.fail("TimeoutError")

    async def run(self, concurrency: int, seconds: float) -> Figures:
        await asyncio.gather(*(self.open() for _ in range(concurrency)))  # before the clock starts
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.total = math.ceil(seconds * self.rate)
        last_sweep = self.start
        for connection in list(self.connections):
            self.next(connection, self.start)
        while True:
            now = time.perf_counter()
            if now >= self.deadline and not any(c.sent for c in self.connections):
                break
            if self.rate and now < self.deadline:
                self.tick(now)
            if now - last_sweep > SWEEP_S:
                self.sweep(now)
                last_sweep = now
            if now > self.deadline + self.timeout_s + 1:
                break
            await asyncio.sleep(TICK_S)
        self.figures.seconds = time.perf_counter() - self.start
        self.figures.errors["NotSent"] += len(self.waiting)
        if not self.figures.errors["NotSent"]:
            del self.figures.errors["NotSent"]
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()
        return self.figures


def drive(url: str, make: RequestMaker, concurrency: int, seconds: float, rate: float = 0, timeout_s: float = 10.0) -> Figures:
    """Send requests made by `make` to the server at `url` (its scheme, host and port) for `seconds`."""
    parts = urlsplit(url)
    driver = Driver(parts.hostname or "127.0.0.1", parts.port or 80, make, rate, timeout_s)
    return uvloop.run(driver.run(concurrency, seconds))


def json_request(path: str, headers: dict[str, str], document: object) -> tuple[str, dict[str, str], bytes]:
    return path, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()
