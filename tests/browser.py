"""A real headless browser for the web console's tests: Debian's Chromium (/usr/bin/chromium, `make setup` installs it)
driven by Playwright, which never downloads a browser of its own here.

    from browser import browser, served, watched   # `browser` is a module fixture

    with served(create_app(settings, sources)) as url, watched(browser) as (page, errors):
        page.goto(url)
        ...
        assert not errors

`served` runs an ASGI app with uvicorn in a thread on a free port (the console's tests, with fake sources);
a test through the real stack opens the running console's settings.console_url instead.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
START_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module: Playwright's sync API holds an asyncio loop as running while it is open, so it
    is closed before the next module's tests (asyncio.run() in them would refuse to start)."""
    assert CHROMIUM.exists(), f"no Chromium at {CHROMIUM}: `make setup` installs Debian's (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def watched(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page, and the page's errors as they happen: console.error messages and uncaught exceptions."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    page.on("console", logged)
    page.on("pageerror", lambda failed: errors.append(f"uncaught: {failed}"))
    try:
        yield page, errors
    finally:
        context.close()


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """app on http://127.0.0.1:<free port> until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="console-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()
