"""The app registry: which apps may use the HTTP API, with what secret, environment, vendors and send rate.

Apps are data: each is an App record (schemas/pushpipe.App.avsc) on the compacted topic `apps`, keyed by the app
id, so Kafka keeps each app's latest record for ever; every process that needs them (the API, the receipt gateway,
the fan-out and dispatch jobs) loads the topic into memory and follows it (schemas/apps.py: App, AppFollower, a
consumer thread, neutral ground for all of them). `pushpipe app create|rotate-secret|list` writes and reads them
through Registry, here.

No usable secret is stored:
- the API secret is 32 random bytes (43 characters), shown once when made and kept only as a scrypt hash
  (hashlib.scrypt, n=2**14, r=8, p=1: 16 MiB and ~50 ms a check). scrypt rather than argon2: both are
  memory-hard, and scrypt is in the standard library (OpenSSL's), so no C extension to build or pin; for a
  256-bit random secret a slow hash only matters if the topic leaks, and then scrypt's cost is plenty. The API
  pays it once per secret and process, then compares a keyed digest in memory (ingress/auth.py);
- the receipt callback secret is derived: HMAC(receipt key, "callback|<app>|<salt>") (schemas/apps.py callback_key),
  the app's own receipt key, which signs the callback URLs dispatch gives vendors for the app and makes its SDK key
  (gateway/signing.py); the record keeps the salt only, and a new salt rotates them all.
Nothing here logs a secret or a hash; `shown` is an app without them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from pushpipe.config import Settings
from pushpipe.connectors.base import Vendor
from pushpipe.schemas import codec, keys
from pushpipe.schemas.apps import DEFAULT_RATE_PER_S, App, AppFollower, AppStore, callback_key

log = logging.getLogger(__name__)

ENVIRONMENTS = ("production", "test")
VENDORS = tuple(v.value for v in Vendor)
MAX_RATE_PER_S = 1_000_000.0
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 14, 8, 1
SECRET_BYTES = 32


class AppProblem(ValueError):
    """A registry operation that cannot be done: an app that exists already or not at all, a bad value."""


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
    """The app's receipt callback secret: its own receipt key (schemas/apps.py callback_key), which signs its callback URLs
    and makes its SDK key; a new callback salt changes it."""
    return _b64(callback_key(receipt_key, app))


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_UNKNOWN_APP_HASH = hash_secret("no app has this secret")  # checked for an unknown app, so that it takes as long


# --- where apps are kept ---------------------------------------------------------------------------------------

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

    def rotate_callback(self, app_id: str) -> App:
        """A new receipt callback secret alone (a new salt): the app's earlier callback signatures and SDK key stop working."""
        rotated = replace(self._existing(app_id), callback_salt=new_salt(), updated_at=self._now())
        self.store.put(rotated)
        log.info("app %s: receipt callback secret rotated", app_id)
        return rotated

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
