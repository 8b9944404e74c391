"""Where the console's figures and stories come from: the Sources protocol (tests hand the app a fake) and
RealSources, which reads ClickHouse's rollups, Prometheus, and the support modules (diagnose, testpush, report).

A service that does not answer is an Unavailable naming it (502 in the app); diagnose.NotFound and ValueError
pass through (404, 400). No message carries a password: URLs are masked.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from pushpipe import status_view
from pushpipe.config import Settings, masked_url
from pushpipe.console import health
from pushpipe.infra import stack
from pushpipe.sinks import clickhouse
from pushpipe.stream_health import PrometheusError, StreamHealth
from pushpipe.stream_health import read as read_prometheus
from pushpipe.support import diagnose, report, testpush

Doc = dict[str, Any]
HEALTH_TTL_S = 5.0  # vendor and stream health share one reading of Prometheus for this long
DETAIL_CHARS = 200

OVERVIEW_SQL = """SELECT toUnixTimestamp(bucket) * 1000 AS at, vendor, brand,
       sum(accepted) AS accepted, sum(delivered) AS delivered, sum(opened) AS opened
FROM {db}.rates_hour
WHERE bucket >= now() - INTERVAL {{hours:UInt32}} HOUR{app_filter}
GROUP BY bucket, vendor, brand
HAVING accepted > 0
ORDER BY bucket, vendor, brand"""  # HAVING: not what fan-out did not send (vendor none), which has no rate
APP_FILTER = " AND app_id = {app:String}"


class Unavailable(Exception):
    """A service the console reads did not answer, or answered with an error; the message says which, in plain words."""


class Sources(Protocol):
    def overview(self, hours: int, app: str | None = None) -> Doc:
        """{"hours", "app_id", "rows": [{"at" (epoch ms), "vendor", "brand", "accepted", "delivered", "opened"}]}, oldest first."""

    def vendor_health(self) -> list[Doc]:
        """Per vendor: throughput, failure rate, p99 due→accepted, open breakers, firing alerts, credentials' expiry."""

    def stream_health(self) -> Doc:
        """`pushpipe status --json`'s document: components, prometheus, stages, alerts."""

    def pin_story(self, app: str, pin: str) -> Doc: ...

    def message_story(self, app: str, msg: str) -> Doc: ...

    def test_push(self, app: str, pin: str | None = None, token: str | None = None) -> Doc: ...

    def test_push_progress(self, app: str, msg_id: str, targets: list[str] | None = None) -> Doc:
        """`targets`: the tokens the test push went to, so that those not heard of yet show as waiting."""

    def week_report(self, app: str | None) -> Path:
        """The weekly report's PNG."""


class RealSources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._health: tuple[float, StreamHealth] | None = None

    def overview(self, hours: int, app: str | None = None) -> Doc:
        sql = OVERVIEW_SQL.format(db=self.settings.clickhouse_database, app_filter=APP_FILTER if app else "")
        parameters: dict[str, Any] = {"hours": hours, **({"app": app} if app else {})}
        with self.reading():
            client = clickhouse.connect(self.settings, create=False)
            try:
                rows = client.rows(sql, parameters=parameters)
            finally:
                client.close()
        return {"hours": hours, "app_id": app, "rows": [overview_row(row) for row in rows]}

    def vendor_health(self) -> list[Doc]:
        read = self._prometheus()
        with self.reading():
            credentials = health.credentials(self.settings.prometheus_url)
        return health.vendor_rows(read, credentials, time.time())

    def stream_health(self) -> Doc:
        read = self._prometheus()
        return status_view.document(stack.component_statuses(self.settings), read)

    def pin_story(self, app: str, pin: str) -> Doc:
        with self.reading():
            return diagnose.pin_story(self.settings, app, pin)

    def message_story(self, app: str, msg: str) -> Doc:
        with self.reading():
            return diagnose.message_story(self.settings, app, msg)

    def test_push(self, app: str, pin: str | None = None, token: str | None = None) -> Doc:
        with self.reading():
            try:
                return testpush.send(self.settings, app, pin=pin, token=token)
            except RuntimeError as failed:  # PushProducer.flush: Kafka did not take the request in time
                raise Unavailable(f"Kafka at {self.settings.kafka_bootstrap} did not take the test push: {detail(failed)}") from failed

    def test_push_progress(self, app: str, msg_id: str, targets: list[str] | None = None) -> Doc:
        with self.reading():
            return testpush.progress(self.settings, app, msg_id, targets)

    def week_report(self, app: str | None) -> Path:
        with self.reading():
            png, _figures = report.week(self.settings, app_id=app)
        return png

    def _prometheus(self) -> StreamHealth:
        """One reading of every stage figure and the firing alerts, kept HEALTH_TTL_S."""
        with self._lock:
            if self._health is None or time.monotonic() - self._health[0] > HEALTH_TTL_S:
                read = read_prometheus(self.settings.prometheus_url)
                if read.error:
                    raise Unavailable(read.error)
                self._health = (time.monotonic(), read)
            return self._health[1]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turns a client library's failure into Unavailable, naming the service it could not reach."""
        try:
            yield
        except Exception as failed:
            service = self.service_of(failed)
            if service is None:
                raise
            raise Unavailable(f"{service} {'did not answer' if unreachable(failed) else 'answered with an error'}: {detail(failed)}") from failed

    def service_of(self, failed: BaseException) -> str | None:
        """What `failed` came from ("ClickHouse at http://...", ...), by the library that raised it; None for other errors."""
        s = self.settings
        if isinstance(failed, httpx.HTTPError):
            return self.named_url(_request_url(failed))
        if isinstance(failed, PrometheusError):
            return f"Prometheus at {masked_url(s.prometheus_url)}"
        libraries = {cls.__module__.split(".")[0] for cls in type(failed).__mro__}
        for library, name, where in (("clickhouse_connect", "ClickHouse", s.clickhouse_url), ("elasticsearch", "Elasticsearch", s.es_url),
                                     ("elastic_transport", "Elasticsearch", s.es_url), ("confluent_kafka", "Kafka", s.kafka_bootstrap)):
            if library in libraries:
                return f"{name} at {masked_url(where)}"
        if isinstance(failed, (ConnectionError, TimeoutError)):
            return "a service the console reads"
        return None

    def named_url(self, url: str) -> str:
        s = self.settings
        for name, base in (("Prometheus", s.prometheus_url), ("Alertmanager", s.alertmanager_url), ("Elasticsearch", s.es_url),
                           ("ClickHouse", s.clickhouse_url), ("the vendor simulators", s.simulator_admin_url),
                           ("the vendor simulators", s.simulator_url), ("the receipt gateway", s.gateway_url)):
            if url.startswith(base):
                return f"{name} at {masked_url(base)}"
        return masked_url(url.split("?", 1)[0]) or "a service the console reads"


def overview_row(row: dict[str, Any]) -> Doc:
    return {"at": int(row["at"]), "vendor": row["vendor"], "brand": row["brand"],
            **{count: int(row[count]) for count in ("accepted", "delivered", "opened")}}


def unreachable(failed: BaseException) -> bool:
    """A failure to reach the service at all (no connection, no answer in time), as opposed to an answer that is an error."""
    names = {cls.__name__ for cls in type(failed).__mro__}
    return bool(names & {"OperationalError", "ConnectionError", "ConnectionTimeout", "TransportError", "TimeoutException",
                         "NetworkError", "OSError", "TimeoutError", "KafkaException"})


def detail(failed: BaseException) -> str:
    """The first line of the failure's message, masked and cut short (a client's message can be a page long)."""
    text = masked_url(str(failed).strip().splitlines()[0] if str(failed).strip() else type(failed).__name__)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "..."


def _request_url(failed: httpx.HTTPError) -> str:
    try:
        return str(failed.request.url)
    except RuntimeError:  # an error raised without its request
        return ""
