"""schemas/apps.py's AppFollower against a stand-in consumer: a topic that is missing at first, then has a
partition without a leader for a moment (as a newly made topic does), is read once it is readable; the follower's
thread does not die on the way (it did, and a fresh stack's gateway never became ready)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from pushpipe.config import load
from pushpipe.schemas import codec
from pushpipe.schemas.apps import App, AppFollower

APP = App("shop", "scrypt$x", "salt", vendors=("hms",))


class NewTopicConsumer:
    """Missing on the first look, leaderless on the second, then one partition holding one App."""

    def __init__(self) -> None:
        self.looks, self.assigned, self.delivered = 0, False, False

    def list_topics(self, topic: str, timeout: float) -> Any:
        self.looks += 1
        partitions = {} if self.looks == 1 else {0: object()}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)})

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        if self.looks == 2:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 0, 1

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = True

    def poll(self, timeout: float) -> Any:
        if not self.assigned or self.delivered:
            return None
        self.delivered = True
        value = codec.encode("App", APP.record())
        return SimpleNamespace(error=lambda: None, key=lambda: b"shop", value=lambda: value, partition=lambda: 0, offset=lambda: 0)

    def close(self) -> None:
        pass


def test_a_new_topic_is_read_once_it_has_a_leader(tmp_path: Path) -> None:
    follower = AppFollower(load(home=tmp_path))
    follower._consumer.close()
    follower._consumer = NewTopicConsumer()  # type: ignore[assignment]
    follower.start()
    try:
        follower.wait_loaded(10)
        assert follower.get("shop") == APP
        assert follower._thread.is_alive()
    finally:
        follower.close()
