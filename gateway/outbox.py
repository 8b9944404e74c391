"""The gateway's Kafka producer: idempotent, acks=all, and awaitable, so an HTTP answer waits for Kafka."""
from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Record = tuple[str, bytes, bytes]  # (topic, key, value)
Settled = tuple[asyncio.AbstractEventLoop, asyncio.Future[None], KafkaError | None]


class Outbox:
    """Delivery reports are collected as librdkafka serves them and handed to each waiting event loop in one call
    per poll, not one per record: a wake-up of the loop (call_soon_threadsafe writes to its self-pipe) costs more
    than settling a future, and at thousands of records a second the reports come in batches."""

    def __init__(self, bootstrap: str, client_id: str = "pushpipe-gateway") -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "compression.type": "lz4", "client.id": client_id})
        self._settled: collections.deque[Settled] = collections.deque()  # thread-safe appends and pops
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"{client_id}-kafka-poll", daemon=True)
        self._poller.start()

    async def send(self, records: list[Record]) -> None:
        """Return once Kafka has acknowledged every record (all in-sync replicas); KafkaException otherwise."""
        loop = asyncio.get_running_loop()
        waits = []
        for topic, key, value in records:
            done: asyncio.Future[None] = loop.create_future()
            waits.append(done)
            self._produce(topic, key, value, partial(self._delivered, loop, done))
        await (waits[0] if len(waits) == 1 else asyncio.gather(*waits))

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
