"""The send API's HTTP layer on plain ASGI: a request read into a Call, routed by its path's parts, answered with a Reply.

No framework, by measurement (bench/asgi_choice.py, the same send endpoint with a no-op Kafka, on this 2-core machine):
on uvicorn a plain ASGI app spent 67-69 µs of CPU per request at the most it takes (12,300-12,950 requests/s), where
the same app on Starlette spent 129-132 µs (6,550-6,870/s) and RSGI on granian 78-79 µs (10,700-11,450/s). Starlette's
middleware, Request and Response layers were half of a send's CPU, and the API's routes are few and fixed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON = b"application/json"


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the API's endpoints read it: the path's parameters, the headers (names lower-case), the body."""

    params: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: bytes = JSON


class TooLarge(Exception):
    """The body is over the limit it was read with."""


def headers_of(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body; TooLarge past `limit` bytes, as declared (Content-Length) or as read, before reading on."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def answer(send: Send, reply: Reply) -> None:
    head = [(b"content-type", reply.media_type), (b"content-length", str(len(reply.body)).encode())]
    head += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": head})
    await send({"type": "http.response.body", "body": reply.body})


class JoinedWrites:
    """A connection's transport whose writes within one pass of the event loop leave as one.

    uvicorn writes an answer's head and its body apart: two send() calls, and on loopback each also runs the
    receiving side's TCP path on this CPU. Joined, the API app with a no-op Kafka (wrk, 16 connections, runs
    interleaved) spent 110-151 µs of CPU a request where two writes took 142-181; on the stack at 5,000 sends/s
    (bench.compare, ABBA) 178-193 µs where 185-201, p99 79-228 ms where 159-453: less than the noise there."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # the rest is the transport's own
        return getattr(self._transport, name)


def protocol() -> type:
    """uvicorn's httptools protocol, with each connection's writes joined (JoinedWrites)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class JoinedHttpTools(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]

    return JoinedHttpTools


def serve(app: Callable[[Scope, Receive, Send], Awaitable[None]], host: str, port: int) -> None:
    """Serve the app the way the send API is served: uvloop and httptools with writes joined, no websockets, no access
    log (it would say which app calls what; secrets are in headers, which uvicorn never logs), and neither a Server
    header nor the proxy-headers middleware, which the API has no use for (a few µs of a request)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, loop="uvloop", http=protocol(), ws="none", lifespan="on", access_log=False,
                proxy_headers=False, server_header=False, log_level="warning")


async def lifespan(receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]) -> None:
    """ASGI's lifespan: nothing to start, `on_shutdown` when the server stops."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
