"""The gateway's Kafka producer: idempotent, acks=all, and awaitable, so an HTTP answer waits for Kafka."""
from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Record = tuple[str, bytes, bytes]  # (topic, key, value)
SWEEP_S = 0.1  # how often deadlines are checked while sends are waiting: a timeout fires up to this much late
Settled = tuple[asyncio.AbstractEventLoop, asyncio.Future[None], KafkaError | None]


class Outbox:
    """Delivery reports are collected as librdkafka serves them and handed to each waiting event loop in one call
    per poll, not one per record: a wake-up of the loop (call_soon_threadsafe writes to its self-pipe) costs more
    than settling a future, and at thousands of records a second the reports come in batches.

    With `ack_timeout_s`, a send not acknowledged in time raises TimeoutError. The deadlines are kept in send order
    (one timeout for all) and swept a few times a second by one timer, rather than by a timer per send as
    asyncio.timeout sets and cancels (measured: ~20 µs of a ~100 µs API request)."""

    def __init__(self, bootstrap: str, client_id: str = "pushpipe-gateway", ack_timeout_s: float | None = None) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "compression.type": "lz4", "client.id": client_id})
        self._settled: collections.deque[Settled] = collections.deque()  # thread-safe appends and pops
        self.ack_timeout_s = ack_timeout_s
        self._deadlines: collections.deque[tuple[float, list[asyncio.Future[None]]]] = collections.deque()  # the loop's own
        self._sweeping = False
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"{client_id}-kafka-poll", daemon=True)
        self._poller.start()

    async def send(self, records: list[Record]) -> None:
        """Return once Kafka has acknowledged every record (all in-sync replicas); KafkaException if one failed,
        TimeoutError once `ack_timeout_s` passed without every acknowledgement."""
        loop = asyncio.get_running_loop()
        waits = []
        for topic, key, value in records:
            done: asyncio.Future[None] = loop.create_future()
            waits.append(done)
            self._produce(topic, key, value, partial(self._delivered, loop, done))
        if self.ack_timeout_s is not None:
            self._expire_later(loop, waits)
        await (waits[0] if len(waits) == 1 else asyncio.gather(*waits))

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

    def _delivered(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], err: KafkaError | None, _msg: Message) -> None:
        self._settled.append((loop, done, err))

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.05)
                self._hand_over()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give each loop the reports served since the last call, in one wake-up."""
        batches: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], KafkaError | None]]] = {}
        while self._settled:
            loop, done, err = self._settled.popleft()
            batches.setdefault(loop, []).append((done, err))
        for loop, batch in batches.items():
            loop.call_soon_threadsafe(_settle_all, batch)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
        self._hand_over()
        self._stop.set()


def _settle_all(batch: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for done, err in batch:
        if done.done():  # its waiter gave up (a timeout)
            continue
        if err is None:
            done.set_result(None)
        else:
            done.set_exception(KafkaException(err))
