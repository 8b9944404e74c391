"""The jobs' Python workers do not log a line per HTTP request of their clients (jobs/runtime.py quiet_logs)."""
from __future__ import annotations

import logging

import pytest

from pushpipe.jobs import runtime


def test_the_jobs_http_clients_log_warnings_but_not_each_request(caplog: pytest.LogCaptureFixture) -> None:
    runtime.quiet_logs()
    with caplog.at_level(logging.INFO):  # the root logger at INFO, as in a job's Python worker
        for name in ("elastic_transport.transport", "httpx"):
            logging.getLogger(name).info("POST http://127.0.0.1:19200/_bulk [status:200]")
            logging.getLogger(name).warning("retrying")
    assert [r.getMessage() for r in caplog.records] == ["retrying", "retrying"]


def test_a_root_logger_at_debug_is_raised_to_info() -> None:
    """Thread mode's pemja sets the root logger to DEBUG and hands every record to the JVM: libraries' debug lines
    (hpack's, one per header encoded) must not even be formatted."""
    root, saved = logging.getLogger(), logging.getLogger().level
    try:
        root.setLevel(logging.DEBUG)
        runtime.quiet_logs()
        assert root.level == logging.INFO and not logging.getLogger("hpack.hpack").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved)
