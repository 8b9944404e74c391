"""gateway/outbox.py without a broker: a send that Kafka never acknowledges times out on its deadline, and one loop's
sends keep their own deadlines (the real stack's tests cover acknowledged sends: tests/test_ingress_e2e.py, the gateway's)."""
from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import KafkaException

from pushpipe.gateway.outbox import SWEEP_S, Outbox

NOWHERE = "127.0.0.1:1"  # nothing listens: librdkafka queues the records and never gets an acknowledgement


def test_a_send_kafka_never_acknowledges_times_out_on_its_deadline() -> None:
    outbox = Outbox(NOWHERE, client_id="test-outbox", ack_timeout_s=0.3)

    async def send() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="did not acknowledge within 0.3 s"):
            await asyncio.wait_for(outbox.send([("t", b"k", b"v"), ("t", b"k2", b"v2")]), 5)  # 5 s: a missed deadline
        return time.monotonic() - started

    try:
        waited = asyncio.run(send())
    finally:
        outbox.close(timeout_s=0)
    assert 0.3 <= waited < 0.3 + SWEEP_S + 0.3


def test_later_sends_keep_their_own_deadlines() -> None:
    outbox = Outbox(NOWHERE, client_id="test-outbox", ack_timeout_s=0.4)

    async def two() -> list[float]:
        started = time.monotonic()

        async def one(after_s: float) -> float:
            await asyncio.sleep(after_s)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(outbox.send([("t", b"k", b"v")]), 5)
            return time.monotonic() - started
        return list(await asyncio.gather(one(0.0), one(0.3)))

    try:
        first, second = asyncio.run(two())
    finally:
        outbox.close(timeout_s=0)
    assert 0.4 <= first < 0.4 + SWEEP_S + 0.2
    assert 0.7 <= second < 0.7 + SWEEP_S + 0.2, "the second send waited its own 0.4 s, not the first one's"


def test_a_record_refused_on_the_way_in_leaves_the_ones_before_it_waited_for() -> None:
    """Records produced before one librdkafka refuses at once (too large) still count as waiting, so the loop's timer
    keeps serving their delivery reports; a count that went below zero would stop it for every later send."""
    outbox = Outbox(NOWHERE, client_id="test-outbox", ack_timeout_s=0.3)

    async def send() -> None:
        with pytest.raises(KafkaException):
            await outbox.send([("t", b"k", b"v"), ("t", b"k2", b"x" * 2_000_000)])  # over message.max.bytes
        assert outbox._waiting == 1
        with pytest.raises(TimeoutError):
            await outbox.send([("t", b"k3", b"v")])
        assert outbox._waiting == 2 and outbox._polled is not None, "still polling for the two that wait"

    try:
        asyncio.run(send())
    finally:
        outbox.close(timeout_s=0)
