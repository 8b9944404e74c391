"""BadRecord, the one error for a value that cannot be decoded (codec.py, registry.py): its class and reason go to push.dlq."""
from __future__ import annotations


class BadRecord(ValueError):
    """A value that cannot be decoded; `error` is a machine-readable class for the DLQ."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
