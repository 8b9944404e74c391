"""The one shape every managed component has; `infra.stack` drives a list of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pushpipe.config import Settings


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Problem:
    """Something wrong with a running component: the supervisor restarts it once a problem of this
    kind has lasted grace_s (a process that died needs no grace)."""
    kind: str
    reason: str
    grace_s: float


class Service(Protocol):
    name: str
    version: str

    def address(self, settings: Settings) -> str: ...

    def install(self, settings: Settings) -> None:
        """Download and unpack what the service needs into settings.cache_dir (idempotent, shows progress)."""

    def start(self, settings: Settings) -> None:
        """Start as a background process on loopback unless already healthy; return once healthy."""

    def stop(self, settings: Settings) -> None:
        """Stop the process if it runs (idempotent)."""

    def health(self, settings: Settings) -> Health: ...
