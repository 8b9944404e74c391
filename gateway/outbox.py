"""The gateway's Kafka producer: idempotent, acks=all, and awaitable, so an HTTP answer waits for Kafka."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

Record = tuple[str, bytes, bytes]  # (topic, key, value)


class Outbox:
    def __init__(self, bootstrap: str, client_id: str = "pushpipe-gateway") -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "compression.type": "lz4", "client.id": client_id})
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
            self._produce(topic, key, value, lambda err, _msg, done=done: loop.call_soon_threadsafe(_settle, done, err))
        await asyncio.gather(*waits)

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.05)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def close(self, timeout_s: float = 10.0) -> None:
        self.producer.flush(timeout_s)
        self._stop.set()


def _settle(done: asyncio.Future[None], err: KafkaError | None) -> None:
    if done.done():
        return
    if err is None:
        done.set_result(None)
    else:
        done.set_exception(KafkaException(err))
