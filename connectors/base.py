"""Types and plumbing every push vendor shares: the adapter Protocol, results, secrets, errors, sessions.

An adapter turns one vendor-neutral `Notification` plus a list of device tokens into exactly one
`TokenResult` per token. It never retries and never raises for vendor or transport errors: those
become typed outcomes, and the pipeline decides what to retry (see STYLE.md "Follow" 5 and 6).

This module imports no adapter: each vendor module declares its `SPEC` (connectors.spec) and
connectors.registry collects them.
"""
from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Generic, Literal, NamedTuple, Protocol, TypeVar, get_args

from pushpipe.connectors.credentials import UNWATCHED, CredentialEvents


class Vendor(StrEnum):
    APNS = "apns"
    FCM = "fcm"
    HMS = "hms"
    XIAOMI = "xiaomi"
    OPPO = "oppo"
    VIVO = "vivo"
    HONOR = "honor"
    MEIZU = "meizu"
    UMENG = "umeng"


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    INVALID_TOKEN = "invalid_token"  # permanent: the token is dead, drop it
    THROTTLED = "throttled"  # transient: retry after retry_after_s (or backoff)
    UNAVAILABLE = "unavailable"  # transient: vendor outage, 5xx, timeout, transport error
    REJECTED = "rejected"  # permanent: bad request, payload, credentials; do not retry


class TokenResult(NamedTuple):
    """One token's result; a NamedTuple because a broadcast makes a million of them (4x cheaper than a dataclass)."""

    token: str
    outcome: Outcome
    code: str = ""  # vendor status (e.g. "410"), "timeout"/"transport", or "" for local checks
    reason: str = ""  # vendor reason (e.g. "Unregistered") or local reason ("PayloadTooLarge")
    retry_after_s: float | None = None
    vendor_msg_id: str = ""


Priority = Literal["high", "normal", "low"]
Environment = Literal["production", "sandbox"]


@dataclass(frozen=True)
class Notification:
    """A vendor-neutral message; adapters map it onto each vendor's payload."""

    msg_id: str
    app_id: str
    title: str = ""
    body: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
    priority: Priority = "high"
    category: str = ""
    message_class: str = ""  # "service" or "marketing" as the policy classes the category; "": not classed
    collapse_id: str = ""
    ttl_s: int = 86_400  # 0 = deliver now or drop
    environment: Environment = "production"
    topic: str = ""  # APNs bundle id; empty = the adapter's configured topic
    callback_url: str = ""  # where the vendor posts this message's receipts (gateway/signing.py); "" = the config's

    def __post_init__(self) -> None:
        if self.priority not in get_args(Priority):
            raise ValueError(f"priority must be one of {get_args(Priority)}, got {self.priority!r}")
        if self.environment not in get_args(Environment):
            raise ValueError(f"environment must be one of {get_args(Environment)}, got {self.environment!r}")
        if self.ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {self.ttl_s}")


@dataclass(frozen=True)
class Secret:
    """A credential (or a path to one) that never shows in repr, str or logs."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return "**********"

    def __repr__(self) -> str:
        return "Secret('**********')"


def reveal(value: Secret | str) -> str:
    """The plain text of a config field that holds a Secret (or, before __post_init__, a str)."""
    return value.reveal() if isinstance(value, Secret) else value


def mask_secrets(config: object, *names: str) -> None:
    """Wrap the named str fields of a frozen config in Secret (call from its __post_init__)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, str):
            object.__setattr__(config, name, Secret(value))


class VendorConfig(Protocol):
    """Per-vendor settings object; validated in its own __post_init__."""

    vendor: ClassVar[Vendor]


class VendorAdapter(Protocol):
    vendor: Vendor
    max_batch: int  # most tokens the pipeline should pass to one send()
    credential_events: CredentialEvents  # where its credential caches report (set before open(); connectors.credentials)

    async def open(self) -> None:
        """Create clients and credentials; call once before send()."""

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        """One result per token, in order. Never raises for vendor, transport or timeout errors."""

    async def aclose(self) -> None:
        """Close clients; idempotent."""


# ---- errors and results --------------------------------------------------------------------------

Failure = tuple[Outcome, str, str]  # (outcome, vendor code, reason) for one token


def results(tokens: list[str], outcome: Outcome, code: str = "", reason: str = "",
            retry_after_s: float | None = None, msg_id: str = "") -> list[TokenResult]:
    """The same result for every token of a request; a vendor message id only on accepted tokens."""
    vendor_id = msg_id if outcome is Outcome.ACCEPTED else ""
    return [TokenResult(t, outcome, code, reason, retry_after_s, vendor_id) for t in tokens]


def per_token(tokens: list[str], failures: Mapping[str, Failure], code: str, msg_id: str) -> list[TokenResult]:
    """Accepted with `msg_id`, except the tokens the vendor listed as failed."""
    return [TokenResult(t, *failures[t]) if t in failures else TokenResult(t, Outcome.ACCEPTED, code, "", None, msg_id)
            for t in tokens]


class InvalidNotification(ValueError):
    """The notification cannot be sent to this vendor at all (checked locally, before any request);
    `reason` is the vendor's name for it where it has one (APNs' PayloadTooLarge, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason

    def results(self, tokens: list[str]) -> list[TokenResult]:
        """REJECTED for every token: no request is made."""
        return results(tokens, Outcome.REJECTED, "", self.reason)


class VendorError(Exception):
    """A failure that applies to every token of a request (auth, a save step, HTTP 429/5xx)."""

    def __init__(self, outcome: Outcome, code: str, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{outcome.value} {code} {reason}")
        self.outcome, self.code, self.reason, self.retry_after_s = outcome, code, reason, retry_after_s

    def result(self, token: str) -> TokenResult:
        return TokenResult(token, self.outcome, self.code, self.reason, self.retry_after_s)

    def results(self, tokens: list[str]) -> list[TokenResult]:
        return results(tokens, self.outcome, self.code, self.reason, self.retry_after_s)


# ---- set-up and tear-down ------------------------------------------------------------------------

class BatchLimited(Protocol):
    """A vendor config that says how many tokens one send() takes."""

    @property
    def max_batch(self) -> int: ...


AC = TypeVar("AC", bound=BatchLimited)  # an adapter's config
S = TypeVar("S")


class AdapterSession(Generic[AC, S]):
    """open() creates what a send needs (clients, credential caches) as one session; aclose() releases it
    (idempotent); send() before open() is a programming error. Subclasses implement start() and stop().

    The adapter keeps its config, the config's max_batch and the clock it reads (time.time unless a test fakes it)."""

    _session: S | None = None
    credential_events: CredentialEvents = UNWATCHED

    def __init__(self, config: AC, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.max_batch = config.max_batch
        self._clock = clock

    async def open(self) -> None:
        self._session = self.start()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await self.stop(session)

    def session(self) -> S:
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__}.send() before open()")
        return self._session

    @abstractmethod
    def start(self) -> S:
        """The new session (called by open())."""

    @abstractmethod
    async def stop(self, session: S) -> None:
        """Close the session's clients (called by aclose())."""
