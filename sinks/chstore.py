"""The embedded ClickHouse: one process owns the chDB data directory and serves it over HTTP.

chDB locks its data directory against a second process, so every writer (the analytics job) and every
reader (analysts, `pushpipe sql`, tests) goes through this process. It speaks enough of ClickHouse's HTTP
interface for clickhouse-connect, the one client every part of pushpipe uses, so a ClickHouse server is
just another URL:
- the SQL in the `query` parameter or the body; with both, or after an INSERT's first line in the body, the
  body is the INSERT's data in its FORMAT (Native from clickhouse-connect, JSONEachRow from curl), compressed if Content-Encoding says so
  (lz4, zstd, gzip, deflate); it goes to chDB through a temporary file (INSERT ... FROM INFILE);
- `param_<name>` query parameters for {name:Type} placeholders, `database`, and ClickHouse settings as
  further parameters (applied to SELECTs; chDB's defaults serve inserts and DDL); output in the query's
  FORMAT (TabSeparated by default);
- user and password (HTTP basic auth, X-ClickHouse-User/-Key headers or user/password parameters) when the
  store is started with them; errors as HTTP 500 with ClickHouse's message.
Queries run on a pool of chDB connections to the one engine, side by side: an analyst's slow query does
not hold back the pipeline's inserts. `curl 'http://127.0.0.1:18123/?query=SELECT+1'` works as against a server.

Run: python -m pushpipe.sinks.chstore --path DIR --port 18123 [--user U --password-env VAR]
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import logging
import os
import queue
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import chdb

log = logging.getLogger("chstore")
HANDLES = 4  # queries at once: the pipeline's inserts beside a few analysts' queries
# clickhouse-connect's HTTP transport parameters: not ClickHouse settings, and not for chDB
TRANSPORT = {"query", "database", "user", "password", "query_id", "session_id", "session_timeout", "session_check",
             "compress", "decompress", "enable_http_compression", "send_progress_in_http_headers",
             "http_headers_progress_interval_ms", "wait_end_of_query", "client_protocol_version", "default_format",
             "output_format_arrow_string_as_string"}
TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*\Z", re.IGNORECASE)
INSERT_DATA = re.compile(r"\A(\s*INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*\Z", re.IGNORECASE | re.DOTALL)
BODY_INSERT = re.compile(rb"\A(\s*INSERT\s+INTO\s+.+?\s+FORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
SELECT = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    sql: str
    data: bytes  # the INSERT's data ("" for a query)
    database: str
    params: dict[str, str]  # {name:Type} placeholders
    settings: dict[str, str]


class Store:
    """A pool of chDB connections to one engine, each used by one query at a time."""

    def __init__(self, path: str, handles: int = HANDLES) -> None:
        self._free: queue.Queue[Any] = queue.Queue()
        for _ in range(handles):
            self._free.put(chdb.connect(path))

    @contextmanager
    def _handle(self) -> Iterator[Any]:
        conn = self._free.get()
        try:
            yield conn
        finally:
            self._free.put(conn)

    def run(self, request: Request) -> tuple[bytes, str, int]:
        """(output, its format, rows written)."""
        sql, fmt, written = request.sql, "TabSeparated", 0
        with self._handle() as conn, _data_file(request.data) as infile:
            if infile:
                insert = INSERT_DATA.match(sql)
                if not insert:
                    raise QueryError(400, "Code: 62. DB::Exception: data in the body needs an INSERT ... FORMAT <format> query")
                sql = f"{insert[1]} FROM INFILE '{infile}' FORMAT {insert[2]}"
            elif trailing := TRAILING_FORMAT.search(sql):
                sql, fmt = sql[: trailing.start()], trailing[1]
            if request.database:
                conn.query(f"USE `{request.database.replace('`', '')}`")  # unqualified tables resolve there
            if SELECT.match(sql):  # where a SETTINGS clause may end the query
                sql = _with_settings(sql, request.settings)
            result = conn.query(sql, fmt, params=request.params or None)
            if infile:
                written = int(getattr(result, "rows_read", lambda: 0)() or 0)
        return (result.bytes() if result is not None else b""), fmt, written


@contextmanager
def _data_file(data: bytes) -> Iterator[str]:
    if not data:
        yield ""
        return
    with tempfile.NamedTemporaryFile(prefix="chstore-", suffix=".data") as file:
        file.write(data)
        file.flush()
        yield file.name


def _with_settings(sql: str, settings: dict[str, str]) -> str:
    if not settings:
        return sql
    clause = ", ".join(f"{k} = {_setting_value(v)}" for k, v in settings.items())
    return f"{sql} SETTINGS {clause}"


def _setting_value(value: str) -> str:
    return value if re.fullmatch(r"-?\d+(\.\d+)?", value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def decompressed(body: bytes, encoding: str) -> bytes:
    """The request body as sent before Content-Encoding."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return _every_frame(body, lambda: lz4.frame.LZ4FrameDecompressor())
    if encoding == "zstd":
        import zstandard

        return _every_frame(body, lambda: zstandard.ZstdDecompressor().decompressobj())
    raise QueryError(415, f"Code: 1. DB::Exception: unsupported Content-Encoding {encoding!r}")


def _every_frame(body: bytes, decompressor: Any) -> bytes:
    """All the frames of a body, one after another: clickhouse-connect compresses each block of a large insert
    as a frame of its own, and a decompressor stops at the end of its frame (the first alone lost every row
    after the first 16,384)."""
    parts = []
    while body:
        frame = decompressor()
        parts.append(frame.decompress(body))
        if not frame.eof:
            raise QueryError(400, "Code: 27. DB::Exception: the compressed body ends inside a frame (truncated)")
        body = frame.unused_data
    return b"".join(parts)


def parse_request(path: str, headers: Any, body: bytes) -> Request:
    params = {k: v[-1] for k, v in parse_qs(urlparse(path).query, keep_blank_values=True).items()}
    body = decompressed(body, headers.get("Content-Encoding") or "")
    query = params.get("query", "")
    if query:
        sql, data = query, body
    elif head := BODY_INSERT.match(body[:65536]):  # the INSERT, then its data, both in the body
        sql, data = head[1].decode(), body[head.end():]
    else:
        sql, data = body.decode(), b""
    placeholders = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
    settings = {k: v for k, v in params.items() if k not in TRANSPORT and not k.startswith("param_") and SETTING_NAME.match(k)}
    return Request(sql, data, params.get("database", ""), placeholders, settings)


def credentials(path: str, headers: Any) -> tuple[str, str]:
    """(user, password) as the request gives them: basic auth, X-ClickHouse headers or parameters."""
    auth = headers.get("Authorization") or ""
    if auth.lower().startswith("basic "):
        user, _, password = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")
        return user, password
    if headers.get("X-ClickHouse-User"):
        return headers["X-ClickHouse-User"], headers.get("X-ClickHouse-Key") or ""
    params = parse_qs(urlparse(path).query)
    return params.get("user", ["default"])[-1], params.get("password", [""])[-1]


def make_handler(store: Store, user: str = "", password: str = "") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if urlparse(self.path).path in ("/ping", "/health"):
                return self._reply(200, b"Ok.\n")
            self._execute()

        def do_POST(self) -> None:
            self._execute()

        def _execute(self) -> None:
            body = self._body()
            try:
                self._authenticate()
                request = parse_request(self.path, self.headers, body)
                if not request.sql.strip():
                    raise QueryError(400, "Empty query")
                output, fmt, written = store.run(request)
            except QueryError as bad:
                return self._reply(bad.status, f"{bad}\n".encode())
            except Exception as exc:  # chDB raises RuntimeError with ClickHouse's message
                return self._reply(500, f"{exc}\n".encode())
            summary = {"read_rows": "0", "read_bytes": "0", "written_rows": str(written), "written_bytes": "0",
                       "total_rows_to_read": "0", "result_rows": str(written), "result_bytes": "0"}
            self._reply(200, output, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Summary": json.dumps(summary),
                                      "X-ClickHouse-Timezone": "UTC"})

        def _body(self) -> bytes:
            """The request body, sized or chunked (clickhouse-connect streams its inserts)."""
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline().strip():  # trailers, up to the empty line
                pass
            return b"".join(chunks)

        def _authenticate(self) -> None:
            if not user:
                return
            given_user, given_password = credentials(self.path, self.headers)
            if given_user != user or not hmac.compare_digest(given_password.encode(), password.encode()):
                raise QueryError(401, f"Code: 516. DB::Exception: {given_user}: Authentication failed: password is incorrect,"
                                      " or there is no user with such name.")

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=UTF-8" if status != 200 else "application/octet-stream")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug(fmt, *args)

    return Handler


def serve(path: str, host: str, port: int, user: str = "", password: str = "") -> None:
    server = ThreadingHTTPServer((host, port), make_handler(Store(path), user, password))
    server.daemon_threads = True
    log.info("chstore serving %s on %s:%d%s", path, host, port, " (password required)" if user else "")
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="chDB data directory (owned exclusively)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18123)
    parser.add_argument("--user", default="", help="require this user (and the password) on every query")
    parser.add_argument("--password-env", default="CHSTORE_PASSWORD", help="the environment variable holding the password")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.path, args.host, args.port, args.user, os.environ.get(args.password_env, ""))


if __name__ == "__main__":
    main()
