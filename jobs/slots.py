"""Keys that spread a stream over a keyed operator's subtasks evenly, and keep a record on its subtask.

Flink places a key on the subtask of its key group: murmur(the key's Java hashCode) % max parallelism, scaled to
the parallelism (KeyGroupRangeAssignment). With a handful of keys a hash may leave a subtask without any, so
`slot_keys` picks one key per subtask by that same computation, and `SlotOf` keys a record by a hash of its
first bytes among them: the same record (read again after a restore) always goes to the same subtask.
"""
from __future__ import annotations

import zlib

PREFIX_BYTES = 256  # enough to tell records apart (a bundle's header and its first batch id)
_MASK = 0xFFFFFFFF


def _int32(value: int) -> int:
    value &= _MASK
    return value - (1 << 32) if value & 0x80000000 else value


def _rotl(value: int, bits: int) -> int:
    value &= _MASK
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def java_string_hash(text: str) -> int:
    """java.lang.String.hashCode (for text in the Basic Multilingual Plane, which slot keys are)."""
    code = 0
    for char in text:
        code = (31 * code + ord(char)) & _MASK
    return _int32(code)


def murmur_hash(code: int) -> int:
    """org.apache.flink.util.MathUtils.murmurHash(int): non-negative."""
    code = _rotl(code * 0xCC9E2D51, 15)
    code = _rotl(code * 0x1B873593, 13)
    code = (code * 5 + 0xE6546B64) & _MASK
    code ^= 4
    code ^= code >> 16
    code = (code * 0x85EBCA6B) & _MASK
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & _MASK
    code ^= code >> 16
    signed = _int32(code)
    return signed if signed >= 0 else (-signed if signed != -(1 << 31) else 0)


def subtask_of(key: str, parallelism: int, max_parallelism: int) -> int:
    """The subtask a STRING key goes to (KeyGroupRangeAssignment.assignKeyToParallelOperator)."""
    return murmur_hash(java_string_hash(key)) % max_parallelism * parallelism // max_parallelism


def slot_keys(parallelism: int, max_parallelism: int) -> list[str]:
    """One key per subtask, in subtask order: the first of "0", "1", ... that lands on it."""
    keys: dict[int, str] = {}
    n = 0
    while len(keys) < parallelism:
        keys.setdefault(subtask_of(str(n), parallelism, max_parallelism), str(n))
        n += 1
    return [keys[i] for i in range(parallelism)]


class SlotOf:
    """A key selector: a record's slot key, one per subtask, chosen by a hash of its first PREFIX_BYTES."""

    def __init__(self, parallelism: int, max_parallelism: int) -> None:
        self.keys = slot_keys(parallelism, max_parallelism)

    def __call__(self, record: bytes) -> str:
        return self.keys[zlib.crc32(record[:PREFIX_BYTES]) % len(self.keys)]
