"""The keys dispatch's records are sent under: a record keeps its key, so a record read again after a restore
goes to the subtask whose send ledger saw it.

With one subtask one key is enough (its timer polls every send). With more, PyFlink places a key by a hash of
its own serialized form (not Java's String.hashCode, measured: "1".."4" went to subtasks 0, 1, 0, 1 where that
hash would put all on 0), so there are KEYS_PER_SUBTASK keys a subtask: with 8 of them per subtask the chance
that one subtask gets none is 2 x 2^-16 at parallelism 2, and each key's timer polls only while its sends run.
"""
from __future__ import annotations

import zlib

PREFIX_BYTES = 256  # enough to tell records apart (a bundle's header and its first batch id)
KEYS_PER_SUBTASK = 8


class SlotOf:
    """A key selector: a record's key, from a hash of its first PREFIX_BYTES."""

    def __init__(self, parallelism: int) -> None:
        self.keys = 1 if parallelism == 1 else KEYS_PER_SUBTASK * parallelism

    def __call__(self, record: bytes) -> str:
        return str(zlib.crc32(record[:PREFIX_BYTES]) % self.keys)
