"""Reading the pipeline from outside: consumer lag, what the simulators accepted, ClickHouse, ES."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pushpipe.config import Settings
from pushpipe.infra import http
from pushpipe.sinks import clickhouse


def group_lag(settings: Settings, group: str, topic: str) -> int | None:
    """Records of `topic` not yet committed by `group` (the jobs commit on each checkpoint);
    None while the broker cannot tell yet (e.g. the group coordinator is still loading)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    except KafkaException as exc:
        if exc.args[0].retriable() or exc.args[0].code() == KafkaError.NOT_COORDINATOR:
            return None
        raise
    finally:
        consumer.close()


def simulator_accepted(settings: Settings, prefix: str) -> dict[str, Any]:
    """{"count", "unique", "tokens"} accepted by the vendor simulators for tokens with this prefix."""
    response = http.client().get(f"{settings.simulator_admin_url}/accepted", params={"prefix": prefix}, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_campaign_counted(settings: Settings, campaign: str, tokens: int, timeout_s: float, interval_s: float = 0.5) -> None:
    """Wait until ClickHouse counts `tokens` accepted tokens for a campaign (one client for all the polls)."""
    sql = (f"SELECT sum(accepted) AS a FROM {settings.clickhouse_database}.dispatch_results FINAL"
           f" WHERE campaign = '{campaign}'")
    _wait_count(settings, sql, tokens, timeout_s, f"ClickHouse counts of {campaign}", interval_s)


def wait_campaign_delivered(settings: Settings, campaign: str, tokens: int, timeout_s: float, interval_s: float = 0.5) -> None:
    """Wait until ClickHouse's lifecycle has `tokens` delivered tokens for a campaign (their receipts counted)."""
    sql = (f"SELECT uniqExact(token) AS a FROM {settings.clickhouse_database}.lifecycle_events"
           f" WHERE campaign = '{campaign}' AND state = 'delivered'")
    _wait_count(settings, sql, tokens, timeout_s, f"delivery receipts of {campaign}", interval_s)


def _wait_count(settings: Settings, sql: str, at_least: int, timeout_s: float, what: str, interval_s: float) -> None:
    ch = clickhouse.connect(settings, create=False)
    try:
        wait_for(lambda: int(ch.rows(sql)[0]["a"] or 0) >= at_least, timeout_s, what, interval_s=interval_s)
    finally:
        ch.close()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, progress: Callable[[Any], None] | None = None,
             interval_s: float = 0.5) -> Any:
    """Poll until check() returns a truthy value; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if progress:
            progress(last)
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def wait_fanout_read(settings: Settings, topic: str | None = None, timeout_s: float = 90) -> None:
    """Wait until the fan-out job has read (and checkpointed) everything on `topic` (default device.events)."""
    topic = topic or settings.topics.device_events
    wait_for(lambda: group_lag(settings, "pushpipe-fanout", topic) == 0, timeout_s, f"fan-out to read {topic}")
