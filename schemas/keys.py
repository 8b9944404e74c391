"""Ids that travel through the pipeline, the rules they follow, and every key built from them.

Every key of Flink state and of the sinks starts with the app id, and an app id can hold neither SEP
("|") nor ":", so "app|rest" and "app:rest" split back into (app, rest) however rest is spelled: one
app's keys can never equal another's. Message ids hold no SEP either, so "app|msg|vendor|text" is
unambiguous too. Pins and tokens are the last part of any key they are in, so they may hold anything
printable. Records whose ids break these rules are refused at the edge (fan-out's parsers) with the
reason, before any key is built.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Any

SEP = "|"
APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_MSG_ID_BYTES = 128
MAX_PIN_BYTES = 128
MAX_TOKEN_BYTES = 256  # the longest vendor token today is FCM's, ~163 characters
MAX_PINS = 100_000  # pins of one request (target "pins")
MAX_TOKENS = 10_000  # tokens of one request (target "tokens")
ES_ID_BYTES = 512  # Elasticsearch's limit on a document id
WHITESPACE = re.compile(r"\s")  # what str.isspace calls whitespace (both use Py_UNICODE_ISSPACE)


class InvalidId(ValueError):
    """An id that breaks the rules; the message names the field and what is wrong."""


def check_app_id(app_id: str) -> None:
    if not APP_ID.match(app_id):
        raise InvalidId(f"app_id {_shown(app_id)} must be 1-64 of A-Z a-z 0-9 . _ - and start with a letter or digit")


def check_msg_id(msg_id: str) -> None:
    _check_text("msg_id", msg_id, MAX_MSG_ID_BYTES)
    if SEP in msg_id:
        raise InvalidId(f"msg_id {_shown(msg_id)} must not contain {SEP!r}")


def check_pin(pin: str, field: str = "pin") -> None:
    _check_text(field, pin, MAX_PIN_BYTES)


def check_token(token: str, field: str = "token") -> None:
    _check_text(field, token, MAX_TOKEN_BYTES)
    if WHITESPACE.search(token):
        raise InvalidId(f"{field} {_shown(token)} must not contain whitespace")


def _check_text(field: str, value: str, max_bytes: int) -> None:
    if not value.strip():
        raise InvalidId(f"{field} is empty")
    size = len(value.encode())
    if size > max_bytes:
        raise InvalidId(f"{field} is {size} bytes, at most {max_bytes} are allowed")
    if value.isprintable():  # no category C character (nor a separator but " "): checked in C, not char by char
        return
    bad = next((c for c in value if unicodedata.category(c)[0] == "C"), None)
    if bad is not None:
        raise InvalidId(f"{field} {_shown(value)} contains the control or format character U+{ord(bad):04X}")


def _shown(value: str) -> str:
    """A value as it may appear in a reason: escaped, and cut short."""
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


# Flink keys: the app first, then what is unique within the app.

ANONYMOUS = "\x1f"  # starts the user key of a device without a pin: no pin can (control characters are refused)


def pin_key(app_id: str, pin: str) -> str:
    return f"{app_id}{SEP}{pin}"


def user_key(app_id: str, pin: str, token: str) -> str:
    """The pin directory's key of a device's user: its pin's, or for a device without a pin (an anonymous
    install) one of its own, so its policy (caps, quiet hours, quotas) is kept per device."""
    return pin_key(app_id, pin) if pin else f"{app_id}{SEP}{ANONYMOUS}{token}"


def app_of(key: str) -> str:
    """The app of any key built here (each starts with the app id and SEP)."""
    return key.split(SEP, 1)[0]


def pin_of(key: str) -> str:
    """The pin of a user key ("" for an anonymous device's)."""
    rest = key.split(SEP, 1)[1]
    return "" if rest.startswith(ANONYMOUS) else rest


def message_key(app_id: str, msg_id: str) -> str:
    return f"{app_id}{SEP}{msg_id}"


def group_key(app_id: str, msg_id: str, vendor: str, text: str) -> str:
    """The tokens of one message for one vendor and one rendered text (the Batcher's key)."""
    return SEP.join((app_id, msg_id, vendor, text))


def bundle_key(priority: str, app_id: str, vendor: str) -> str:
    """The small batches of one (lane, app, vendor) that may share a lane record (the Bundler's key)."""
    return SEP.join((priority, app_id, vendor))


def priority_of_bundle(key: str) -> str:
    return key.split(SEP, 1)[0]


SHARDS = 32  # an app's devices are spread over this many shard keys (see jobs/fanout/shards.py)


def shard_key(app_id: str, token: str) -> str:
    """The device shard of a token: (app, token_shard(token))."""
    return f"{app_id}{SEP}{token_shard(token)}"


def token_shard(token: str) -> int:
    """crc32(token) % SHARDS: a broadcast's batch holds tokens of one shard."""
    return zlib.crc32(token.encode()) % SHARDS


def all_shard_keys(app_id: str) -> list[str]:
    return [f"{app_id}{SEP}{n}" for n in range(SHARDS)]


def shard_of(key: str) -> str:
    """The shard number of a shard key, as text."""
    return key.split(SEP, 1)[1]


def device_key(app_id: str, token: str) -> str:
    """The Kafka key of a DeviceEvent on the compacted device.events: a tombstone on it deletes the token."""
    return f"{app_id}{SEP}{token}"


def parse_device_key(key: str) -> tuple[str, str]:
    """(app, token) of a device key; InvalidId when it is not one."""
    app_id, _, token = key.partition(SEP)
    check_app_id(app_id)
    check_token(token)
    return app_id, token


def preference_key(event: dict[str, Any]) -> str:
    """The Kafka key of a PreferenceEvent: the app, the pin and what the event sets, so that compaction of
    user.preferences keeps the latest event of each setting (an opt-out survives a later time zone change)."""
    kind = event["kind"]
    if kind in ("opt_out", "opt_in"):
        setting = f"category:{event['category']}" if event.get("category") else f"channel:{event.get('channel') or 'push'}"
    elif kind in ("unsubscribe", "resubscribe"):
        setting = "subscription"
    else:  # set_timezone, set_quiet_hours
        setting = kind.removeprefix("set_")
    return SEP.join((event["app_id"], event["pin"], setting))


def parse_preference_key(key: str) -> tuple[str, str, str]:
    """(app, pin, setting) of a preference key; InvalidId when the app or pin breaks the rules."""
    app_id, pin, setting = (key.split(SEP, 2) + ["", ""])[:3]
    check_app_id(app_id)
    check_pin(pin)
    return app_id, pin, setting


# Sink ids: readable where they fit, a digest where they would not.

def message_doc_id(app_id: str, msg_id: str) -> str:
    """The Elasticsearch id of a message: "app:msg" (at most 64 + 1 + 128 bytes)."""
    return f"{app_id}:{msg_id}"


def delivery_doc_id(app_id: str, msg_id: str, key: str) -> str:
    """The Elasticsearch id of one delivery: "app:msg|key", its key replaced by a digest if it would not fit."""
    doc_id = f"{message_doc_id(app_id, msg_id)}{SEP}{key}"
    if len(doc_id.encode()) <= ES_ID_BYTES:
        return doc_id
    return f"{message_doc_id(app_id, msg_id)}{SEP}sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def batch_id(app_id: str, msg_id: str, vendor: str, text: str, position: str) -> str:
    """A batch's id, the same every time the same tokens of a message are batched again (after a replay):
    derived from the app, message, vendor, text variant and the batch's position among the message's batches."""
    digest = hashlib.sha256(SEP.join((app_id, msg_id, vendor, text, position)).encode()).hexdigest()[:16]
    return f"{msg_id}:{vendor}:{digest}"
