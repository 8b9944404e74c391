"""What travels between the fan-out's operators: one typed message per edge, keyed by its first field.

    parsers, Intake ──ToPin──────> PinDirectory    (key: keys.user_key; a pin push due now comes straight from
                                                    the parser; the shards send broadcasts too)
    parsers, Intake ──ToShard────> ShardDirectory  (key: keys.shard_key)
    directories ─────Gather──────> Batcher         (key: keys.group_key)
    directories, Batcher ─SmallBatch─> Bundler     (key: keys.bundle_key)
    ShardDirectory ──ShardReport─> BroadcastTally  (key: keys.message_key)

Lane records, results and dead tokens leave as Avro bytes on the tags below.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pyflink.common import Types
from pyflink.datastream import OutputTag

from pushpipe.config import PRIORITIES
from pushpipe.jobs.fanout.devices import Target
from pushpipe.jobs.fanout.records import Unsent
from pushpipe.jobs.runtime import BYTES

Record = dict[str, Any]
PICKLED = Types.PICKLED_BYTE_ARRAY()


# What a message to a directory carries. Literal strings, not Enums: an Enum member costs ~3 us more to pickle
# and unpickle on every hop between operators (measured), and mypy checks a Literal just as well.
PinKind = Literal[
    "device",  # a DeviceEvent of one of the pin's devices
    "preference",  # a PreferenceEvent of the pin
    "request",  # a request to the pin from Intake (its pin list carried empty)
    "push",  # a pin push due now, straight from the parser: the pin directory deduplicates it and checks its TTL
    "broadcast",  # a broadcast or segment that reaches one of the pin's devices and that policy can touch
]
ShardKind = Literal[
    "device",  # a DeviceEvent of a token in the shard
    "preference",  # a PreferenceEvent of any pin of the app
    "token",  # a request to one token (of a request to explicit tokens)
    "everyone",  # a broadcast or segment
    "forget",  # a token deleted by a tombstone: {"app_id", "token"}
]


class ToPin(NamedTuple):
    key: str
    kind: PinKind
    record: Record


class ToShard(NamedTuple):
    key: str
    kind: ShardKind
    record: Record


class Gather(NamedTuple):
    """Tokens of one (message, vendor, text) to batch with those of other pins or shards; or, with vendor
    NO_VENDOR, a pin list's not-sent outcomes to report in few results."""
    key: str
    vendor: str
    request: Record
    items: list[Target] | list[Unsent]


class SmallBatch(NamedTuple):
    """A batch too small to fill a lane record alone, as Avro bytes: cheaper to pass and keep than the record."""
    key: str
    priority: str
    tokens: int
    body: bytes


class ShardReport(NamedTuple):
    """How many devices of one shard a broadcast or segment matched."""
    key: str
    request: Record
    matched: int


TO_PIN = OutputTag("to-pin", PICKLED)
TO_SHARD = OutputTag("to-shard", PICKLED)
GATHER = OutputTag("gather", PICKLED)
TO_BUNDLER = OutputTag("to-bundler", PICKLED)
REPORT = OutputTag("report", PICKLED)
RESULTS = OutputTag("results", BYTES)
FEEDBACK = OutputTag("feedback", BYTES)
LANES = {priority: OutputTag(f"lane-{priority}", BYTES) for priority in PRIORITIES}


def key_of(message: tuple[Any, ...]) -> str:
    """The key of any message above: its first field."""
    return str(message[0])
