"""The lean HTTP/2 client against a scripted h2 server: answers, flow control, and each way a stream fails.

The server is a few lines on the `h2` library over TLS (the simulators' CA), so each failure the
client must survive can be made on demand; the APNs contract tests run it against the simulator.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hpack import NeverIndexedHeaderTuple

from pushpipe.connectors.h2client import H2Client, H2Error, H2Timeout
from pushpipe.connectors.http import ssl_context
from pushpipe.simulators.tls import ensure_tls


class ScriptedServer(asyncio.Protocol):
    """Answers each request by its path: /ok echoes the body's length, /reset, /goaway, /close, /silent."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.paths: dict[int, str] = {}
        self.received: dict[int, int] = {}
        self.headers: list[list[tuple[str, str]]] = []  # of each request, as decoded

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.paths[event.stream_id] = dict(event.headers)[":path"]
                self.headers.append(list(event.headers))
                self.received[event.stream_id] = 0
            elif isinstance(event, h2.events.DataReceived):
                self.received[event.stream_id] += len(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.answer(event.stream_id, self.paths[event.stream_id])
        if not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())

    def answer(self, stream_id: int, path: str) -> None:
        if path == "/reset":
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path == "/goaway":
            self.h2.close_connection(last_stream_id=0)  # "none of your streams was processed"
        elif path == "/close":
            self.transport.close()
        elif path == "/ok":
            body = str(self.received[stream_id]).encode()
            self.h2.send_headers(stream_id, [(":status", "200"), ("apns-id", "A-1")])
            self.h2.send_data(stream_id, body, end_stream=True)


def run(test: Callable[[H2Client], Awaitable[None]], tmp_path: Path, timeout_s: float = 5.0,
        volatile: frozenset[str] = frozenset()) -> list[ScriptedServer]:
    """Runs `test` against a fresh server; returns the server's connections, to inspect what they received."""
    connections: list[ScriptedServer] = []

    def accept() -> ScriptedServer:
        connections.append(ScriptedServer())
        return connections[-1]

    async def main() -> None:
        files = ensure_tls(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert, files.key)
        context.set_alpn_protocols(["h2"])
        server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0, ssl=context)
        client = H2Client(f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}", ssl_context(str(files.ca_cert)),
                          timeout_s, volatile)
        try:
            await test(client)
        finally:
            await client.aclose()
            server.close()

    asyncio.run(main())
    return connections


def test_concurrent_requests_share_one_connection_and_large_bodies_wait_for_the_window(tmp_path: Path) -> None:
    async def test(client: H2Client) -> None:
        answers = await asyncio.gather(*(client.post("/ok", {"x-n": str(n)}, b"a" * 100_000) for n in range(20)))
        assert {(a.status, a.headers["apns-id"], a.body) for a in answers} == {(200, "A-1", b"100000")}
        first = client._connection
        await client.post("/ok", {}, b"")
        assert client._connection is first

    run(test, tmp_path)


def test_per_request_headers_stay_out_of_the_hpack_table_and_arrive_intact(tmp_path: Path) -> None:
    async def test(client: H2Client) -> None:
        for n in range(3):
            await client.post("/ok", {"authorization": "bearer abc", "apns-id": f"id-{n}"}, b"")

    [server] = run(test, tmp_path, volatile=frozenset({"apns-id"}))
    for n, headers in enumerate(server.headers):
        fields = {name: (value, isinstance(field, NeverIndexedHeaderTuple)) for field in headers for name, value in [field]}
        assert fields[":path"] == ("/ok", True)
        assert fields["apns-id"] == (f"id-{n}", True)
        assert fields["authorization"] == ("bearer abc", False)
    table = set(server.h2.decoder.header_table.dynamic_entries)
    assert (b"authorization", b"bearer abc") in table, "long-lived headers are indexed"
    assert not any(name in (b":path", b"apns-id") for name, _ in table)


def test_a_reset_stream_fails_only_that_request(tmp_path: Path) -> None:
    async def test(client: H2Client) -> None:
        reset, ok = await asyncio.gather(client.post("/reset", {}, b"x"), client.post("/ok", {}, b"xy"),
                                         return_exceptions=True)
        assert isinstance(reset, H2Error) and "reset" in str(reset)
        assert ok.body == b"2"

    run(test, tmp_path)


@pytest.mark.parametrize("path", ["/goaway", "/close"])
def test_goaway_or_a_lost_connection_fails_the_stream_and_the_next_request_reconnects(tmp_path: Path, path: str) -> None:
    async def test(client: H2Client) -> None:
        with pytest.raises(H2Error) as failed:
            await client.post(path, {}, b"x")
        assert not isinstance(failed.value, H2Timeout), "the failure must be seen at once, not by waiting"
        assert (await client.post("/ok", {}, b"abc")).body == b"3"

    run(test, tmp_path)


def test_no_answer_is_a_timeout_and_the_connection_stays_usable(tmp_path: Path) -> None:
    async def test(client: H2Client) -> None:
        with pytest.raises(H2Timeout):
            await client.post("/silent", {}, b"x")
        assert (await client.post("/ok", {}, b"x")).status == 200

    run(test, tmp_path, timeout_s=0.3)


def test_an_origin_that_refuses_connections_is_a_transport_error(tmp_path: Path) -> None:
    async def main() -> None:
        client = H2Client("https://127.0.0.1:9", ssl_context(True), 2.0)
        with pytest.raises(H2Error, match="cannot connect"):
            await client.post("/ok", {}, b"")

    asyncio.run(main())
