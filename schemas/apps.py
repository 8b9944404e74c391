"""The app registry as its readers see it: App records on the compacted topic `apps` (key = the app id), loaded
into memory and followed by a consumer thread (AppFollower). The send API, the receipt gateway and the fan-out and
dispatch jobs read it here; ingress/apps.py writes it (`pushpipe app create|rotate-secret`) and keeps its secrets.

A reader looks an app up with a dict read (`get`), never a call to Kafka: the follower's thread keeps the dict. A job's
operator or the gateway starts one with `follow`, which waits for the first load a bounded time, so that the first
records see the registry, and otherwise goes on (logged) rather than stopping the pipeline for it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from pushpipe.schemas import codec

if TYPE_CHECKING:
    from pushpipe.config import Settings

log = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 100.0
LOAD_TIMEOUT_S = 30.0  # how long `follow` waits for the first load


@dataclass(frozen=True)
class App:
    app_id: str
    secret_hash: str
    callback_salt: str
    environment: str = "production"
    vendors: tuple[str, ...] = ()  # empty: every vendor
    rate_per_s: float = DEFAULT_RATE_PER_S
    created_at: int = 0
    updated_at: int = 0

    def allows(self, vendor: str) -> bool:
        return not self.vendors or vendor in self.vendors

    def shown(self) -> dict[str, Any]:
        """What may be shown of the app: no secret, no hash, no salt."""
        return {"app_id": self.app_id, "environment": self.environment, "vendors": list(self.vendors), "rate_per_s": self.rate_per_s,
                "created_at": self.created_at, "updated_at": self.updated_at}

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "vendors": list(self.vendors)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> App:
        return cls(app_id=record["app_id"], secret_hash=record["secret_hash"], callback_salt=record["callback_salt"],
                   environment=record["environment"], vendors=tuple(record["vendors"]), rate_per_s=record["rate_per_s"],
                   created_at=record["created_at"], updated_at=record["updated_at"])

    def __repr__(self) -> str:  # a stray log line or traceback shows no hash
        return f"App({self.app_id!r}, {self.environment}, vendors={list(self.vendors) or 'all'}, {self.rate_per_s:g}/s)"


def callback_key(receipt_key: bytes, app: App) -> bytes:
    """The app's own receipt key, HMAC(receipt key, "callback|<app>|<salt>"): it signs the app's callback URLs and makes
    its SDK key (gateway/signing.py), so a new callback salt replaces them all. Shown once as the app's receipt
    callback secret (ingress/apps.py callback_secret)."""
    return hmac.new(receipt_key, f"callback|{app.app_id}|{app.callback_salt}".encode(), hashlib.sha256).digest()


class AppLookup(Protocol):
    """What a reader needs: an app by id (None: not registered), as a dict read."""

    def get(self, app_id: str) -> App | None: ...


class AppStore(Protocol):
    """Apps by id, as the registry's readers see them; `put` returns once the app is kept (Kafka acknowledged it)."""

    def get(self, app_id: str) -> App | None: ...

    def all(self) -> list[App]: ...

    def put(self, app: App) -> None: ...


class MemoryApps:
    """Apps in memory: the follower's view of the topic, and the store tests use."""

    def __init__(self, apps: Iterable[App] = ()) -> None:
        self._apps = {app.app_id: app for app in apps}
        self._lock = threading.Lock()

    def get(self, app_id: str) -> App | None:
        return self._apps.get(app_id)

    def all(self) -> list[App]:
        with self._lock:
            return sorted(self._apps.values(), key=lambda app: app.app_id)

    def put(self, app: App) -> None:
        with self._lock:
            self._apps[app.app_id] = app

    def delete(self, app_id: str) -> None:
        with self._lock:
            self._apps.pop(app_id, None)


class AppFollower(MemoryApps):
    """The apps topic in memory: read from its start, then followed by a background thread. `loaded` is set once it
    has read up to the end the topic had when it started; until then an app may be missing."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.topic = settings.topics.apps
        self.loaded = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "pushpipe-apps-reader",
                                   "enable.auto.commit": False, "log_level": 0})  # assigned, never subscribed: no group
        self._thread = threading.Thread(target=self._follow, name="apps-follower", daemon=True)

    def start(self) -> AppFollower:
        self._thread.start()
        return self

    def wait_loaded(self, timeout_s: float) -> None:
        if not self.loaded.wait(timeout_s):
            raise TimeoutError(f"the app registry (topic {self.topic}) was not read within {timeout_s:g} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _follow(self) -> None:
        try:
            ends = self._assign()
            while not self._stop.is_set():
                message = self._consumer.poll(0.2)
                if message is not None and not message.error():
                    apply_record(self, message.key(), message.value())
                    partition, offset = message.partition(), message.offset()
                    if partition is not None and offset is not None and offset + 1 >= ends.get(partition, 0):
                        ends.pop(partition, None)
                if not ends:
                    self.loaded.set()
        finally:
            self._consumer.close()

    def _assign(self) -> dict[int, int]:
        """Assign every partition from its start; the end offset of each that has records (what `loaded` waits for).
        Until the topic is there and each partition has a leader (ensure_topics makes it; a new topic's leaders
        are elected a moment later), it asks again each second."""
        while not self._stop.is_set():
            try:
                ends = self._ends()
            except KafkaException as failed:
                log.info("apps: topic %s not readable yet (%s): asking again", self.topic, failed.args[0].name())
                ends = None
            if ends is not None:
                partitions, high = ends
                self._consumer.assign([TopicPartition(self.topic, number, OFFSET_BEGINNING) for number in partitions])
                return high
            self._stop.wait(1)
        return {}

    def _ends(self) -> tuple[list[int], dict[int, int]] | None:
        """The topic's partitions and the end offset of each that has records; None while the topic is missing."""
        metadata = self._consumer.list_topics(self.topic, timeout=5).topics[self.topic]
        if metadata.error is not None or not metadata.partitions:
            return None
        high = {}
        for number in metadata.partitions:
            low, end = self._consumer.get_watermark_offsets(TopicPartition(self.topic, number), timeout=10)
            if end > low:
                high[number] = end
        return list(metadata.partitions), high


def apply_record(apps: MemoryApps, key: bytes | None, value: bytes | None) -> None:
    """One record of the apps topic: an App replaces the app's earlier one, a tombstone (no value) deletes the app."""
    if value is None:
        apps.delete((key or b"").decode())
        return
    try:
        apps.put(App.from_record(codec.decode("App", value)))
    except codec.BadRecord as bad:
        log.warning("apps: a record that is no App is left out (%s)", bad.error)


def follow(settings: Settings, reader: str, timeout_s: float = LOAD_TIMEOUT_S) -> AppFollower:
    """A started follower (a daemon thread), once it has read the topic or after `timeout_s`: then `reader` goes on
    without the whole registry (logged), and sees each app as the thread reads it."""
    follower = AppFollower(settings).start()
    if not follower.loaded.wait(timeout_s):
        log.warning("%s: the app registry (topic %s) was not read within %g s: going on, apps are taken as they are read",
                    reader, follower.topic, timeout_s)
    return follower
