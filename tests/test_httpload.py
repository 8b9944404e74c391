"""bench/httpload.py against a small HTTP server of the test's own: the closed loop, pacing that charges a stall to
the requests that waited behind it (no coordinated omission), and connections that fail and are reopened."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from bench.httpload import drive, json_request

ANSWER = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """Answers every request 202; request number `stall_at` waits `stall_s` first; every `close_every`th closes its connection."""

    def __init__(self, stall_at: int = -1, stall_s: float = 0.0, close_every: int = 0) -> None:
        self.stall_at, self.stall_s, self.close_every = stall_at, stall_s, close_every
        self.seen = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)

    def _run(self, started: threading.Event) -> None:
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
                await reader.readexactly(length)
                self.seen += 1
                if self.seen == self.stall_at:
                    await asyncio.sleep(self.stall_s)
                if self.close_every and self.seen % self.close_every == 0:
                    writer.close()
                    return
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    running = Server(**getattr(request, "param", {}))
    yield running
    running.stop()


def push(number: int) -> tuple[str, dict[str, str], bytes]:
    return json_request("/v1/apps/a/push", {"Idempotency-Key": f"m-{number}"}, {"n": number})


def test_the_closed_loop_keeps_every_connection_busy(server: Server) -> None:
    figures = drive(f"http://127.0.0.1:{server.port}", push, concurrency=4, seconds=0.5)
    assert figures.done > 50 and figures.statuses == {202: figures.done} and not figures.errors
    assert server.seen == figures.done


@pytest.mark.parametrize("server", [{"stall_at": 20, "stall_s": 0.3}], indirect=True)
def test_paced_latency_counts_from_when_a_request_was_due(server: Server) -> None:
    figures = drive(f"http://127.0.0.1:{server.port}", push, concurrency=1, seconds=1.0, rate=200)
    assert figures.done == 200 and figures.statuses == {202: 200}
    waited = sorted(figures.latencies_ms)
    assert waited[-1] >= 290, "the stalled request itself"
    assert sum(1 for ms in waited if ms > 100) >= 30, "the ~60 requests due during the stall waited behind it and are charged for it"
    assert figures.percentile(50) < 50


@pytest.mark.parametrize("server", [{"close_every": 25}], indirect=True)
def test_a_dropped_connection_is_an_error_and_is_reopened(server: Server) -> None:
    figures = drive(f"http://127.0.0.1:{server.port}", push, concurrency=2, seconds=0.5, rate=400)
    assert figures.errors["ConnectionLost"] >= 4
    assert figures.statuses[202] >= 150, "requests went on over new connections"
