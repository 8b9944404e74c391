"""Dispatch job: push.dispatch -> vendor APIs (async I/O) -> push.results.

Each DispatchBatch is sent by the vendor's adapter (connectors/) from PyFlink's async I/O
operator, many batches in flight at once; every token ends with a typed outcome in one
DispatchResult. Expired batches are not sent.

Run: python -m jobs.dispatch
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Iterator

from pyflink.common import Time
from pyflink.datastream import AsyncDataStream, AsyncFunction, ProcessFunction, RuntimeContext

from connectors.base import Notification, TokenResult, VendorAdapter, create_adapter
from connectors.config import vendor_configs
from jobs import common
from pushpipe.config import Settings, load
from schemas import codec

JOB = "dispatch"
CAPACITY = 200  # batches in flight per operator
TIMEOUT = Time.seconds(120)


class ParseBatches(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from common.decode_or_dlq(JOB, self.topic, "DispatchBatch", value)


def notification_of(batch: dict[str, Any]) -> Notification:
    note = batch["notification"]
    return Notification(
        msg_id=batch["msg_id"],
        app_id=batch["app_id"],
        title=note["title"],
        body=note["body"],
        data=note["data"],
        priority=batch["priority"],
        category=batch["category"],
        collapse_id=note["collapse_id"] or "",
        ttl_s=max(0, (batch["expires_at"] - common.now_ms()) // 1000),
        environment="sandbox" if batch["environment"] == "test" else "production",
    )


def token_outcome(result: TokenResult) -> dict[str, str]:
    return {"token": result.token, "outcome": str(result.outcome), "code": result.code,
            "reason": result.reason, "vendor_msg_id": result.vendor_msg_id}


def local_outcomes(tokens: list[str], outcome: str, code: str, reason: str) -> list[dict[str, str]]:
    return [{"token": t, "outcome": outcome, "code": code, "reason": reason, "vendor_msg_id": ""} for t in tokens]


def result_of(batch: dict[str, Any], outcomes: list[dict[str, str]], sent_at: int) -> dict[str, Any]:
    return codec.new_record(
        "DispatchResult",
        **{k: batch[k] for k in ("batch_id", "msg_id", "app_id", "vendor", "priority", "category", "campaign", "attempt", "requested_at")},
        outcomes=outcomes,
        sent_at=sent_at,
        completed_at=common.now_ms(),
    )


class SendBatch(AsyncFunction):
    """Sends one DispatchBatch through its vendor's adapter; adapters are opened lazily per vendor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        # PyFlink's async operator hands records between threads (reader, event loop, emitter,
        # timers): with the default 5 ms GIL switch interval each hand-off can wait 5 ms.
        sys.setswitchinterval(0.0002)
        self.configs = vendor_configs(self.settings)
        self.adapters: dict[str, VendorAdapter] = {}
        self.opening: dict[str, asyncio.Lock] = {}

    async def adapter(self, vendor: str) -> VendorAdapter:
        lock = self.opening.setdefault(vendor, asyncio.Lock())
        async with lock:
            if vendor not in self.adapters:
                adapter = create_adapter(vendor, self.configs[vendor])
                await adapter.open()
                self.adapters[vendor] = adapter
        return self.adapters[vendor]

    async def async_invoke(self, batch: dict[str, Any]) -> list[bytes]:
        sent_at = common.now_ms()
        return [codec.encode("DispatchResult", result_of(batch, await self.outcomes(batch, sent_at), sent_at))]

    async def outcomes(self, batch: dict[str, Any], now: int) -> list[dict[str, str]]:
        tokens, vendor = batch["tokens"], batch["vendor"]
        if now > batch["expires_at"]:
            return local_outcomes(tokens, "expired", "ttl", "past its TTL before it could be sent")
        if vendor not in self.configs:
            return local_outcomes(tokens, "rejected", "no_vendor_config", f"vendor {vendor!r} is not configured")
        adapter = await self.adapter(vendor)
        parts = [tokens[i : i + adapter.max_batch] for i in range(0, len(tokens), adapter.max_batch)]
        note = notification_of(batch)
        sent = await asyncio.gather(*(adapter.send(note, part) for part in parts))
        return [token_outcome(r) for part in sent for r in part]

    def timeout(self, batch: dict[str, Any]) -> list[bytes]:
        outcomes = local_outcomes(batch["tokens"], "unavailable", "timeout", "dispatch timed out")
        return [codec.encode("DispatchResult", result_of(batch, outcomes, common.now_ms()))]

    def close(self) -> None:
        adapters, self.adapters = self.adapters, {}
        if adapters:
            asyncio.run(asyncio.gather(*(a.aclose() for a in adapters.values())))


def build(settings: Settings) -> Any:
    env = common.environment(settings, JOB)
    topics = settings.topics
    batches = common.kafka_source(env, settings, topics.dispatch, f"pushpipe-{JOB}").process(ParseBatches(topics.dispatch)).name("parse-batches")
    common.sink_dlq(batches, settings)
    results = AsyncDataStream.unordered_wait(batches, SendBatch(settings), TIMEOUT, CAPACITY, output_type=common.BYTES)
    results.name("send").sink_to(common.kafka_sink(settings, topics.results)).name("push.results")
    return env


def main() -> None:
    common.setup_logging()
    build(load()).execute(JOB)


if __name__ == "__main__":
    main()
