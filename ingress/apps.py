"""The app registry: which apps may use the HTTP API, with what secret, environment, vendors and send rate.

Apps are data: each is an App record (schemas/pushpipe.App.avsc) on the compacted topic `apps`, keyed by the app
id, so Kafka keeps each app's latest record for ever; every process that needs them (the API, later the jobs)
loads the topic into memory and follows it (AppFollower, a consumer thread). `pushpipe app create|rotate-secret|list`
writes and reads them through Registry.

No usable secret is stored:
- the API secret is 32 random bytes (43 characters), shown once when made and kept only as a scrypt hash
  (hashlib.scrypt, n=2**14, r=8, p=1: 16 MiB and ~50 ms a check). scrypt rather than argon2: both are
  memory-hard, and scrypt is in the standard library (OpenSSL's), so no C extension to build or pin; for a
  256-bit random secret a slow hash only matters if the topic leaks, and then scrypt's cost is plenty. The API
  pays it once per secret and process, then compares a keyed digest in memory (ingress/auth.py);
- the receipt callback secret (which pushpipe signs the receipt callbacks it sends an app with) is derived, like
  the gateway's SDK keys (gateway/signing.py): HMAC(receipt key, "callback|<app>|<salt>"); the record keeps the
  salt only, and a new salt rotates it.
Nothing here logs a secret or a hash; `shown` is an app without them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from pushpipe.config import Settings
from pushpipe.connectors.base import Vendor
from pushpipe.schemas import codec, keys

log = logging.getLogger(__name__)

ENVIRONMENTS = ("production", "test")
VENDORS = tuple(v.value for v in Vendor)
DEFAULT_RATE_PER_S = 100.0
MAX_RATE_PER_S = 1_000_000.0
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 14, 8, 1
SECRET_BYTES = 32


class AppProblem(ValueError):
    """A registry operation that cannot be done: an app that exists already or not at all, a bad value."""


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


# --- secrets ---------------------------------------------------------------------------------------------------

def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """scrypt$<log2 n>$<r>$<p>$<salt>$<hash>, base64 without padding."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_LOG2_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def secret_matches(secret_hash: str, secret: str) -> bool:
    """Whether `secret` is the one `secret_hash` was made of; the comparison takes the same time wherever they differ."""
    try:
        scheme, log2_n, r, p, salt, digest = secret_hash.split("$")
        expected = _unb64(digest)
        if scheme != "scrypt":
            return False
        given = _scrypt(secret, _unb64(salt), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


def callback_secret(receipt_key: bytes, app: App) -> str:
    """The secret pushpipe signs this app's receipt callbacks with (a new callback salt changes it)."""
    digest = hmac.new(receipt_key, f"callback|{app.app_id}|{app.callback_salt}".encode(), hashlib.sha256).digest()
    return _b64(digest)


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_UNKNOWN_APP_HASH = hash_secret("no app has this secret")  # checked for an unknown app, so that it takes as long


# --- where apps are kept ---------------------------------------------------------------------------------------

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
        """Assign every partition from its start; the end offset of each that has records (what `loaded` waits for)."""
        while not self._stop.is_set():
            try:
                metadata = self._consumer.list_topics(self.topic, timeout=5)
                partitions = metadata.topics[self.topic].partitions
                if metadata.topics[self.topic].error is None and partitions:
                    break
            except KafkaException:
                pass
            self._stop.wait(1)  # the topic is not there yet (ensure_topics makes it)
        else:
            return {}
        ends = {}
        for number in partitions:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, number), timeout=10)
            if high > low:
                ends[number] = high
        self._consumer.assign([TopicPartition(self.topic, number, OFFSET_BEGINNING) for number in partitions])
        return ends



def apply_record(apps: MemoryApps, key: bytes | None, value: bytes | None) -> None:
    """One record of the apps topic: an App replaces the app's earlier one, a tombstone (no value) deletes the app."""
    if value is None:
        apps.delete((key or b"").decode())
        return
    try:
        apps.put(App.from_record(codec.decode("App", value)))
    except codec.BadRecord as bad:
        log.warning("apps: a record that is no App is left out (%s)", bad.error)


class KafkaApps:
    """The registry on Kafka: reads from a follower, writes with acks=all and waits until Kafka has the app."""

    def __init__(self, settings: Settings, follower: AppFollower | None = None) -> None:
        self.topic = settings.topics.apps
        self.follower = follower or AppFollower(settings).start()
        self._producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                                   "client.id": "pushpipe-apps", "log_level": 0})

    def get(self, app_id: str) -> App | None:
        return self.follower.get(app_id)

    def all(self) -> list[App]:
        return self.follower.all()

    def put(self, app: App, timeout_s: float = 30.0) -> None:
        failed: list[KafkaError] = []
        self._producer.produce(self.topic, key=app.app_id.encode(), value=codec.encode("App", app.record()),
                               on_delivery=lambda err, _msg: failed.append(err) if err is not None else None)
        if self._producer.flush(timeout_s) or failed:
            raise KafkaException(failed[0] if failed else KafkaError(KafkaError._MSG_TIMED_OUT))
        self.follower.put(app)  # read-your-write: the follower sees it soon, this process at once

    def close(self) -> None:
        self.follower.close()


# --- operations ------------------------------------------------------------------------------------------------

class Registry:
    """create, rotate-secret, list and verify over a store."""

    def __init__(self, store: AppStore, clock: Any = time.time) -> None:
        self.store, self._clock = store, clock

    def create(self, app_id: str, environment: str = "production", vendors: Iterable[str] = (),
               rate_per_s: float = DEFAULT_RATE_PER_S) -> tuple[App, str]:
        """The new app and its secret: the only time the secret is seen."""
        try:
            keys.check_app_id(app_id)
        except keys.InvalidId as bad:
            raise AppProblem(str(bad)) from None
        if environment not in ENVIRONMENTS:
            raise AppProblem(f"environment {environment!r} is not one of {', '.join(ENVIRONMENTS)}")
        chosen = tuple(sorted(set(vendors)))
        unknown = [v for v in chosen if v not in VENDORS]
        if unknown:
            raise AppProblem(f"unknown vendor(s) {', '.join(unknown)}: pick among {', '.join(VENDORS)}")
        if not 0 < rate_per_s <= MAX_RATE_PER_S:
            raise AppProblem(f"rate {rate_per_s:g} is not between 0 (excluded) and {MAX_RATE_PER_S:g} messages/s")
        if self.store.get(app_id) is not None:
            raise AppProblem(f"app {app_id!r} exists already: `pushpipe app rotate-secret {app_id}` gives it a new secret")
        secret, now = new_secret(), self._now()
        app = App(app_id, hash_secret(secret), new_salt(), environment, chosen, float(rate_per_s), now, now)
        self.store.put(app)
        log.info("app %s created (%s, vendors %s, %g/s)", app_id, environment, ",".join(chosen) or "all", rate_per_s)
        return app, secret

    def rotate_secret(self, app_id: str, callback: bool = False) -> tuple[App, str]:
        """A new secret for the app (the old one stops working at once); with `callback`, a new callback secret too."""
        app = self._existing(app_id)
        secret = new_secret()
        rotated = replace(app, secret_hash=hash_secret(secret), updated_at=self._now(),
                          callback_salt=new_salt() if callback else app.callback_salt)
        self.store.put(rotated)
        log.info("app %s: secret rotated%s", app_id, " (and the receipt callback secret)" if callback else "")
        return rotated, secret

    def list(self) -> list[dict[str, Any]]:
        return [app.shown() for app in self.store.all()]

    def verify(self, app_id: str, secret: str) -> bool:
        """Whether `secret` is the app's; as slow for an unknown app as for a known one."""
        app = self.store.get(app_id)
        matches = secret_matches(app.secret_hash if app else _UNKNOWN_APP_HASH, secret)
        return app is not None and matches

    def _existing(self, app_id: str) -> App:
        app = self.store.get(app_id)
        if app is None:
            raise AppProblem(f"no app {app_id!r}: `pushpipe app list` shows the apps")
        return app

    def _now(self) -> int:
        return int(self._clock() * 1000)


def new_salt() -> str:
    return secrets.token_hex(16)
