"""A small HTTP/1.1 load driver for benchmarks: keep-alive connections on uvloop, one request in flight on each.

Written on raw asyncio streams because a general client is slower than the servers it measures (httpx
spends ~200 µs of CPU a request; this ~25 µs), and Debian's `wrk` is not installed on these machines.
Run it in a process of its own, so that its CPU is not the server's.

Two ways to drive:
- closed loop (`rate` 0): each connection sends its next request as soon as the answer came, the most a server takes;
- paced (`rate` > 0): request i is due at start + i / rate, whoever is free sends it, and its latency counts
  from when it was due, not from when it went out: a server that stalls is charged for the requests that
  waited behind the stall (no "coordinated omission").
Requests that get no answer within `timeout_s`, or whose connection fails, count as errors.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import uvloop

RequestMaker = Callable[[int], tuple[str, dict[str, str], bytes]]  # request number -> (path, headers, body)


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


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise ValueError("chunked answers are not read by this driver")
    if length:
        await reader.readexactly(length)
    return status


async def _drive(url: str, make: RequestMaker, concurrency: int, seconds: float, rate: float, timeout_s: float) -> Figures:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    figures = Figures()
    next_number = 0
    opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(concurrency)))  # before the clock starts
    start = time.perf_counter()
    deadline = start + seconds

    async def connection(reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None) -> None:
        nonlocal next_number
        while True:
            number = next_number
            next_number += 1
            due = start + number / rate if rate else time.perf_counter()
            if due >= deadline:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            path, headers, body = make(number)
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
                assert reader is not None
                writer.write(raw_request(f"{host}:{port}", "POST", path, headers, body))
                status = await asyncio.wait_for(_answer(reader), timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as failed:
                figures.errors[type(failed).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            figures.latencies_ms.append((time.perf_counter() - due) * 1000)
            figures.statuses[status] += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection(reader, writer) for reader, writer in opened))
    figures.seconds = time.perf_counter() - start
    return figures


def drive(url: str, make: RequestMaker, concurrency: int, seconds: float, rate: float = 0, timeout_s: float = 10.0) -> Figures:
    """Send requests made by `make` to the server at `url` (its scheme, host and port) for `seconds`."""
    return uvloop.run(_drive(url, make, concurrency, seconds, rate, timeout_s))


def json_request(path: str, headers: dict[str, str], document: object) -> tuple[str, dict[str, str], bytes]:
    return path, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()
