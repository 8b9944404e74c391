"""The embedded ClickHouse store (sinks/chstore.py) through clickhouse-connect, the one client pushpipe uses:
binary compressed inserts of the analytics rows, query parameters, user and password, and an analyst's slow
query beside the pipeline's inserts. Each test runs its own chstore process on a free port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from pushpipe.config import load
from pushpipe.schemas import codec
from pushpipe.sinks import clickhouse

pytestmark = pytest.mark.stack
PASSWORD = "chstore-s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """A chstore that asks for user "pipeline" and its password; yields its URL with them."""
    port = free_port()
    log = (tmp_path / "chstore.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pushpipe.sinks.chstore", "--path", str(tmp_path / "data"),
                             "--port", str(port), "--user", "pipeline"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "CHSTORE_PASSWORD": PASSWORD})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield f"http://pipeline:{PASSWORD}@127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def result(batch: str, accepted: int) -> dict:
    return codec.new_record(
        "DispatchResult", batch_id=batch, msg_id="m1", app_id="a", vendor="hms", campaign="c",
        outcomes=[], accepted=[{"tokens": [f"t{i}" for i in range(accepted)], "pins": [""] * accepted}],
        requested_at=1_795_964_000_000, due_at=1_795_964_001_000, sent_at=1_795_964_001_500, completed_at=1_795_964_002_000)


def test_the_analytics_rows_go_in_binary_and_come_back_through_clickhouse_connect(store: str) -> None:
    settings = load(clickhouse_url=store, clickhouse_database="pp")
    ch = clickhouse.connect(settings)  # the DDL, twice: idempotent
    ch = clickhouse.connect(settings)
    ch.insert("pp.dispatch_results", [clickhouse.result_row(result(f"b{n}", 1000)) for n in range(3)])
    [row] = ch.rows("SELECT sum(accepted) AS accepted, max(latency_ms) AS latency, max(hold_ms) AS hold,"
                    " toUnixTimestamp64Milli(max(completed_at)) AS completed FROM pp.dispatch_results FINAL")
    assert row == {"accepted": 3000, "latency": 1000, "hold": 1000, "completed": 1_795_964_002_000}
    client = clickhouse_connect.get_client(dsn=store)
    assert client.query("SELECT count() FROM pp.dispatch_results WHERE batch_id = {b:String}", parameters={"b": "b1"}).result_rows == [(1,)]
    minute = client.query("SELECT p99_latency_ms FROM pp.delivery_per_minute").result_rows
    assert minute == [(1000.0,)], "latency per accepted token"
    ch.close()


def test_a_wrong_or_missing_password_is_refused(store: str) -> None:
    with pytest.raises(DatabaseError, match="Authentication failed"):
        clickhouse_connect.get_client(dsn=store.replace(PASSWORD, "guess"))
    bare = store.replace(f"pipeline:{PASSWORD}@", "")
    assert httpx.get(bare, params={"query": "SELECT 1"}).status_code == 401
    assert httpx.get(f"{bare}/ping").status_code == 200, "the health check needs no password"


def test_an_analysts_slow_query_does_not_hold_back_the_pipelines_inserts(store: str) -> None:
    settings = load(clickhouse_url=store, clickhouse_database="pp")
    writer, analyst = clickhouse.connect(settings), clickhouse.connect(settings, create=False)
    slow: dict[str, float] = {}

    def analyse() -> None:
        started = time.monotonic()
        analyst.rows("SELECT sum(cityHash64(number)) AS s FROM numbers(1000000000000)"  # stopped after 4 s, however fast
                     " SETTINGS max_execution_time = 4, timeout_overflow_mode = 'break'")
        slow["s"] = time.monotonic() - started

    thread = threading.Thread(target=analyse)
    thread.start()
    lags = []
    n = 0
    while thread.is_alive():
        started = time.monotonic()
        writer.insert("pp.dispatch_results", [clickhouse.result_row(result(f"during-{n}", 1000))])
        lags.append(time.monotonic() - started)
        n += 1
        time.sleep(0.2)
    thread.join()
    print(f"\nanalyst query {slow['s']:.1f}s; {len(lags)} inserts beside it, slowest {max(lags) * 1000:.0f} ms,"
          f" median {sorted(lags)[len(lags) // 2] * 1000:.0f} ms")
    assert slow["s"] > 3 and len(lags) >= 5, "the query ran long enough to measure"
    assert max(lags) < slow["s"] / 2, "inserts went on while the query ran (one lock made them wait it out)"


def test_an_insert_of_many_blocks_keeps_every_row(store: str) -> None:
    """clickhouse-connect sends a large insert as many compressed blocks, each a frame of its own; a store that read
    the first frame alone kept 16,384 rows of each insert (the lifecycle rows of a broadcast)."""
    settings = load(clickhouse_url=store, clickhouse_database="pp")
    ch = clickhouse.connect(settings)
    row = {"ts": 1_795_964_002_000, "recorded_at": 1_795_964_002_000, "app_id": "a", "msg_id": "m", "pin": "", "state": "accepted",
           "code": "", "n": 1, "latency_ms": 5, "vendor": "hms", "brand": "huawei", "model": "p60", "os_version": "14",
           "app_version": "5.2", "environment": "production", "priority": "normal", "category": "c", "campaign": "", "source": "dispatch"}
    ch.insert("pp.lifecycle_events", [{**row, "token": f"t{i}"} for i in range(50_000)])
    assert ch.rows("SELECT count() AS n, uniqExact(token) AS u FROM pp.lifecycle_events") == [{"n": 50_000, "u": 50_000}]
    assert ch.rows("SELECT sum(accepted) AS a FROM pp.rollup_minute") == [{"a": 50_000}]
    ch.close()
