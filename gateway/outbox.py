"""The gateway's Kafka producer: idempotent, acks=all, and awaitable, so an HTTP answer waits for Kafka."""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Record = tuple[str, bytes, bytes]  # (topic, key, value)
SWEEP_S = 0.1  # how often deadlines are checked while sends are waiting: a timeout fires up to this much late
POLL_S = 0.001  # how often delivery reports are served while sends are waiting (libuv's timers count whole ms)


class Outbox:
    """Delivery reports are served on the event loop that waits for them: while a send waits, a timer polls the
    producer every POLL_S (poll(0) does not block) and its callbacks settle their futures there and then.
    A thread that polled and handed the reports over (librdkafka calls back once per record, and each callback took
    the GIL from the loop) cost the send API 323 µs a send at 3,000/s and 287 at 5,000/s, where this costs 292 and 224
    (bench/ingress.py, one run each on a noisy machine); the receipt gateway 22-31 µs a receipt where 20-25
    (bench/receipts.py, interleaved). One Outbox serves one event loop: the callbacks settle futures on the polling one.

    With `ack_timeout_s`, a send not acknowledged in time raises TimeoutError. The deadlines are kept in send order
    (one timeout for all) and swept a few times a second by one timer, rather than by a timer per send as
    asyncio.timeout sets and cancels (measured: ~20 µs of a ~100 µs API request)."""

    def __init__(self, bootstrap: str, client_id: str = "pushpipe-gateway", ack_timeout_s: float | None = None, linger_ms: int = 5) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": linger_ms, "compression.type": "lz4", "client.id": client_id})
        self.ack_timeout_s = ack_timeout_s
        self._waiting = 0  # records sent and not yet settled
        self._deadlines: collections.deque[tuple[float, list[asyncio.Future[None]]]] = collections.deque()
        self._polled: asyncio.AbstractEventLoop | None = None  # the loop whose timer polls, while records wait
        self._sweeping = False

    async def send(self, records: list[Record]) -> None:
        """Return once Kafka has acknowledged every record (all in-sync replicas); KafkaException if one failed,
        TimeoutError once `ack_timeout_s` passed without every acknowledgement."""
        loop = asyncio.get_running_loop()
        waits = []
        if self._polled is not loop:
            self._polled = loop
            loop.call_later(POLL_S, self._poll, loop)
        for topic, key, value in records:
            done: asyncio.Future[None] = loop.create_future()
            self._produce(topic, key, value, partial(self._delivered, done))  # may raise: the records before it still count
            self._waiting += 1
            waits.append(done)
        if self.ack_timeout_s is not None:
            self._expire_later(loop, waits)
        await (waits[0] if len(waits) == 1 else asyncio.gather(*waits))

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._polled is not loop:  # another loop polls now
            return
        self.producer.poll(0)
        if self._waiting > 0:
            loop.call_later(POLL_S, self._poll, loop)
        else:
            self._polled = None

    def _expire_later(self, loop: asyncio.AbstractEventLoop, waits: list[asyncio.Future[None]]) -> None:
        assert self.ack_timeout_s is not None
        self._deadlines.append((loop.time() + self.ack_timeout_s, waits))
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(min(SWEEP_S, self.ack_timeout_s), self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the sends whose deadline passed (their records may still be written: none is promised)."""
        now = loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            for done in self._deadlines.popleft()[1]:
                if not done.done():
                    done.set_exception(TimeoutError(f"Kafka did not acknowledge within {self.ack_timeout_s:g} s"))
        self._sweeping = bool(self._deadlines)
        if self._sweeping:
            loop.call_later(min(SWEEP_S, max(0.0, self._deadlines[0][0] - now)), self._sweep, loop)

    def _delivered(self, done: asyncio.Future[None], err: KafkaError | None, _msg: Message) -> None:
        self._waiting -= 1
        if done.done():  # its waiter gave up (a timeout)
            return
        if err is None:
            done.set_result(None)
        else:
            done.set_exception(KafkaException(err))

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.01)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
