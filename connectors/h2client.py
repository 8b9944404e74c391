"""A lean HTTP/2 client for one origin: one TLS connection, many concurrent streams.

APNs and FCM take one request per device, so the client's cost per request is dispatch's cost
per single-pin push. httpx spent ~1.3 ms of CPU on each (request and response models, cookies, its
transport layers); this client, on the `h2` state machine that httpx uses too, ~0.5 ms.

Failures raise H2Error (H2Timeout for a timeout): connect and TLS errors, a lost connection, a
stream the server reset, or a GOAWAY that dropped the stream. A connection that is lost or told to
go away serves no new request; the next request opens a new one.

Header encoding is the largest part of a request's cost in `h2`, so the client (1) skips h2's
checks of outbound headers (the adapters build them), (2) sends literals without Huffman coding
(pure-Python Huffman costs more CPU than the bytes it saves on a local link), and (3) keeps
per-request values (`:path` and the caller's `volatile` headers) out of the HPACK table, so they do
not evict the long-lived ones, such as the authorization header. Together: ~190 -> ~70 µs a request.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hpack import HeaderTuple, NeverIndexedHeaderTuple


class H2Error(Exception):
    """A transport failure: the server may never have seen the request."""


class H2Timeout(H2Error, TimeoutError):
    """No complete answer within the timeout."""


Header = tuple[str, str] | HeaderTuple  # a HeaderTuple holds str here (header_encoding utf-8), typed as bytes

@dataclass(frozen=True)
class H2Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Stream:
    answer: asyncio.Future[H2Response]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: the h2 state machine fed by the transport, a future per open stream."""

    def __init__(self) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
                                           normalize_outbound_headers=False, split_outbound_cookies=False)
        self.h2 = h2.connection.H2Connection(config)
        encode = self.h2.encoder.encode  # h2 always asks HPACK for Huffman coding; this encoder declines
        self.h2.encoder.encode = lambda headers, huffman=True: encode(headers, huffman=False)  # type: ignore[method-assign]
        self.streams: dict[int, _Stream] = {}
        self.usable = True
        self._changed = asyncio.Event()  # set and replaced whenever a window, a stream slot or the state changes
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(H2Error(f"connection lost: {exc}" if exc else "connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(H2Error(f"HTTP/2 protocol error: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id in self.streams:
            self.streams[event.stream_id].headers = {str(k).lower(): str(v) for k, v in event.headers}
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_id in self.streams:
                self.streams[event.stream_id].body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._fail(event.stream_id, H2Error(f"stream reset by the server (error {event.error_code!s})"))
        elif isinstance(event, h2.events.ConnectionTerminated):  # GOAWAY: later streams were not processed
            self.usable = False
            for stream_id in [s for s in self.streams if s > (event.last_stream_id or 0)]:
                self._fail(stream_id, H2Error(f"GOAWAY ({event.error_code!s}) before the stream was processed"))
        self._notify()

    def _finish(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.answer.done():
            status = int(stream.headers.pop(":status", "0"))
            stream.answer.set_result(H2Response(status, stream.headers, bytes(stream.body)))

    def _fail(self, stream_id: int, error: H2Error) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.answer.done():
            stream.answer.set_exception(error)

    def _fail_all(self, error: H2Error) -> None:
        self.usable = False
        for stream_id in list(self.streams):
            self._fail(stream_id, error)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _until_changed(self) -> None:
        if not self.usable:
            raise H2Error("connection no longer usable")
        await self._changed.wait()

    async def request(self, headers: list[Header], body: bytes) -> H2Response:
        while self.h2.open_outbound_streams >= self.h2.remote_settings.max_concurrent_streams:
            await self._until_changed()
        if not self.usable:
            raise H2Error("connection no longer usable")
        answer: asyncio.Future[H2Response] = asyncio.get_running_loop().create_future()
        stream_id = 0
        try:
            stream_id = self.h2.get_next_available_stream_id()
            self.streams[stream_id] = _Stream(answer)
            self.h2.send_headers(stream_id, headers, end_stream=not body)
            await self._send_body(stream_id, body)
            return await answer
        except h2.exceptions.ProtocolError as exc:  # e.g. stream ids used up: the next request reconnects
            self.usable = False
            raise H2Error(f"HTTP/2 protocol error: {exc}") from exc
        finally:
            if not answer.done():  # cancelled (a timeout) or failed: the server may drop the stream
                self.streams.pop(stream_id, None)
                self._reset(stream_id)

    def _reset(self, stream_id: int) -> None:
        if not self.usable or not stream_id:
            return
        try:
            self.h2.reset_stream(stream_id)
        except h2.exceptions.ProtocolError:  # it closed meanwhile, or never opened
            return
        self._flush()

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        """Body frames as the flow-control windows allow (a full window waits for WINDOW_UPDATE)."""
        view = memoryview(body)
        while view:
            size = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size, len(view))
            if size <= 0:
                self._flush()
                await self._until_changed()
                continue
            self.h2.send_data(stream_id, view[:size].tobytes(), end_stream=size == len(view))
            view = view[size:]
        self._flush()

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class H2Client:
    """Requests to one https origin over one HTTP/2 connection, opened on first use and on demand."""

    def __init__(self, origin: str, ssl_context: ssl.SSLContext, timeout_s: float,
                 volatile: frozenset[str] = frozenset()) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"an https origin is required, got {origin!r}")
        self.host, self.port = parts.hostname, parts.port or 443
        self.authority, self.prefix = parts.netloc, parts.path.rstrip("/")
        self.ssl_context = ssl_context
        self.ssl_context.set_alpn_protocols(["h2"])
        self.timeout_s = timeout_s
        self.volatile = volatile  # header names whose value changes with every request
        self._connection: _Connection | None = None
        self._opening = asyncio.Lock()

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> H2Response:
        """POST `path`; raises H2Error (H2Timeout) when no answer came."""
        fields: list[Header] = [(":method", "POST"), (":scheme", "https"), (":authority", self.authority),
                                NeverIndexedHeaderTuple(":path", self.prefix + path)]
        fields += [NeverIndexedHeaderTuple(k, v) if k in self.volatile else (k, v) for k, v in headers.items()]
        try:
            return await asyncio.wait_for(self._post(fields, body), self.timeout_s)
        except TimeoutError as exc:
            raise H2Timeout(f"no answer within {self.timeout_s:g} s") from exc

    async def _post(self, headers: list[Header], body: bytes) -> H2Response:
        connection = await self._connect()
        return await connection.request(headers, body)

    async def _connect(self) -> _Connection:
        async with self._opening:
            if self._connection is None or not self._connection.usable:
                if self._connection is not None:
                    self._connection.close()
                self._connection = await self._open()
            return self._connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self.ssl_context, server_hostname=self.host)
        except OSError as exc:  # refused, unreachable, TLS (ssl.SSLError is an OSError)
            raise H2Error(f"cannot connect to {self.authority}: {exc}") from exc
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            transport.close()
            raise H2Error(f"{self.authority} did not agree to HTTP/2")
        return connection

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
