"""One HTTP client per process for health checks and admin calls.

`httpx.get()` makes a new client for each call, and with it an SSL context that loads the CA bundle: ~7 ms of
CPU, even for an http:// URL. The supervisor checks every component each second, and that alone was a third of a
core (72% of its CPU, py-spy); one client, kept for the process, also keeps its connections alive between checks.
httpx's Client is safe to share between threads (the supervisor's lag thread).
"""
from __future__ import annotations

import threading

import httpx

_lock = threading.Lock()
_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client()
        return _client
