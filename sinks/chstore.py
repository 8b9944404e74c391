"""The embedded ClickHouse: one process owns the chDB data directory and serves it over HTTP.

chDB locks its data directory against a second process, so every writer (the analytics
job) and every reader (analysts, `pushpipe sql`, tests) goes through this process.
It speaks the core of ClickHouse's HTTP interface: the SQL in the `query` parameter or
in the body, data for INSERT in the body after the query, output in the query's FORMAT
(TabSeparated by default), errors as HTTP 500 with ClickHouse's message. So
`curl 'http://127.0.0.1:18123/?query=SELECT+1'` works as it would against a server.

Run: python -m pushpipe.sinks.chstore --path DIR --port 18123
"""
from __future__ import annotations

import argparse
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from chdb import session as chdb_session

log = logging.getLogger("chstore")


class Store:
    """Serialises queries onto one chDB session."""

    def __init__(self, path: str) -> None:
        self._session = chdb_session.Session(path)
        self._lock = threading.Lock()

    def run(self, sql: str) -> bytes:
        fmt = "TabSeparated"
        with self._lock:
            result = self._session.query(sql, fmt)
        return result.bytes() if result is not None else b""


def _sql_from(handler: BaseHTTPRequestHandler) -> str:
    params = parse_qs(urlparse(handler.path).query)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length).decode() if length else ""
    query = params.get("query", [""])[0]
    if query and body:
        return f"{query}\n{body}"  # ClickHouse semantics: the body is the INSERT's data
    return query or body


def make_handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if urlparse(self.path).path in ("/ping", "/health"):
                return self._reply(200, b"Ok.\n")
            self._execute()

        def do_POST(self) -> None:
            self._execute()

        def _execute(self) -> None:
            sql = _sql_from(self)
            if not sql.strip():
                return self._reply(400, b"Empty query\n")
            try:
                self._reply(200, store.run(sql))
            except Exception as exc:  # chDB raises RuntimeError with ClickHouse's message
                self._reply(500, f"{exc}\n".encode())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug(fmt, *args)

    return Handler


def serve(path: str, host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), make_handler(Store(path)))
    log.info("chstore serving %s on %s:%d", path, host, port)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="chDB data directory (owned exclusively)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18123)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.path, args.host, args.port)


if __name__ == "__main__":
    main()
