"""Sending one DispatchBatch: ledger, exit choice, rate limit, adapter call, retries, fallback.

Independent of PyFlink: the dispatch job's AsyncFunction calls `Sender.dispatch` and routes
what it returns: ("result", DispatchResult), ("retry", DispatchBatch for push.retry) and
("feedback", DeviceEvent for fan-out: invalid tokens, notifications switched off).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from pushpipe.connectors.base import Notification, Outcome, TokenResult, VendorAdapter, VendorConfig
from pushpipe.connectors.credentials import UNWATCHED, CredentialEvents
from pushpipe.connectors.registry import create_adapter
from pushpipe.jobs import metrics
from pushpipe.jobs.breaker import CircuitBreaker
from pushpipe.jobs.dispatch_policy import DispatchPolicy, ExitSpec
from pushpipe.jobs.ledger import Claim, SendLedger
from pushpipe.jobs.policy.classify import message_class
from pushpipe.jobs.ratelimit import AdaptiveRateLimiter
from pushpipe.schemas import codec
from pushpipe.schemas.results import Outcomes

Record = dict[str, Any]
Output = tuple[str, bytes]
Sent = dict[str, tuple[TokenResult, str]]  # token -> (result, exit name)
CIRCUIT_OPEN = "circuit_open"  # the code of a token that reached no vendor: every exit's breaker was open
PROBE_FAILED = "probe_failed"  # the code of a token whose call probed a down exit, and failed
HELD = frozenset({CIRCUIT_OPEN, PROBE_FAILED})  # tokens that wait for their vendor, outside the retry budget
SWITCHED_OFF = "notification_switch_off"  # reason an adapter gives when the user turned notifications off


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Exit:
    vendor: str
    spec: ExitSpec
    config: VendorConfig
    breaker: CircuitBreaker
    credentials: CredentialEvents = UNWATCHED  # where its adapter's credential caches report
    adapter: VendorAdapter | None = None
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ready(self) -> VendorAdapter:
        async with self.opening:
            if self.adapter is None:
                adapter = create_adapter(self.vendor, self.config)
                adapter.credential_events = self.credentials
                await adapter.open()
                self.adapter = adapter
        return self.adapter


def choose_exit(exits: list[Exit], rand: Callable[[], float] = random.random) -> Exit | None:
    """A probe to an exit whose open period is over, else a weighted pick among closed exits."""
    for exit_ in exits:
        if exit_.breaker.state != "closed" and exit_.breaker.allow():
            return exit_
    closed = [e for e in exits if e.breaker.state == "closed"]
    if not closed:
        return None
    pick = rand() * sum(e.spec.weight for e in closed)
    for exit_ in closed:
        pick -= exit_.spec.weight
        if pick < 0:
            return exit_
    return closed[-1]


def notification_of(batch: Record, callback_url: str = "") -> Notification:
    note = batch["notification"]
    return Notification(
        callback_url=callback_url,
        msg_id=batch["msg_id"], app_id=batch["app_id"], title=note["title"], body=note["body"], data=note["data"],
        priority=batch["priority"], category=batch["category"], collapse_id=note["collapse_id"] or "",
        message_class=batch["message_class"] or message_class(batch["category"]),  # "": a batch from before classes
        ttl_s=max(0, (batch["expires_at"] - now_ms()) // 1000),
        environment="sandbox" if batch["environment"] == "test" else "production",
    )


def result_record(batch: Record, outcomes: Outcomes, sent_at: int) -> Record:
    keys = ("batch_id", "msg_id", "app_id", "environment", "vendor", "priority", "category", "campaign", "attempt", "requested_at", "due_at",
            "taken_at", "batched_at")
    return codec.new_record("DispatchResult", **{k: batch[k] for k in keys}, outcomes=outcomes.single,
                            accepted=outcomes.accepted, sent_at=sent_at, completed_at=now_ms())


def per_token(batch: Record, field: str) -> dict[str, str]:
    """token -> its value in the batch's `field` ("pins", "profiles": same order as the tokens); empty for a
    batch written before the field was carried."""
    values = batch.get(field) or []
    return dict(zip(batch["tokens"], values, strict=bool(values)))


def subset(batch: Record, tokens: list[str], attempt: int, not_before: int) -> Record:
    """The batch narrowed to `tokens`, as the next attempt."""
    pins, profiles = per_token(batch, "pins"), per_token(batch, "profiles")
    kept = set(tokens)
    return {**batch, "tokens": tokens, "pins": [pins.get(t, "") for t in tokens] if pins else [],
            "profiles": [profiles.get(t, "") for t in tokens] if profiles else [],
            "fallback_tokens": {t: f for t, f in batch["fallback_tokens"].items() if t in kept},
            "attempt": attempt, "not_before": not_before}


def held_after_probe(sent: Sent) -> Sent:
    """A probe of a down exit that failed again: its tokens wait for the vendor like those that reached none."""
    return {t: (r._replace(code=PROBE_FAILED, reason=f"probe of a down exit failed: {r.code} {r.reason}".strip())
                if r.outcome == "unavailable" else r, exit_) for t, (r, exit_) in sent.items()}


def split_accepted(tokens: list[str], sent: Sent) -> tuple[list[str], list[str]]:
    """(accepted, not accepted) of the tokens sent, each in the order of `tokens`."""
    accepted: list[str] = []
    failed: list[str] = []
    for t in tokens:
        (accepted if sent[t][0].outcome == Outcome.ACCEPTED else failed).append(t)
    return accepted, failed


def accepted_runs(accepted: list[str], sent: Sent) -> Iterator[tuple[tuple[str, str, str, str], list[str]]]:
    """The accepted tokens in runs that share (code, reason, vendor message id, exit): a call's tokens follow one
    another, so a run each. Outcomes.add_accepted merges runs of the same group."""
    def shared(token: str) -> tuple[str, str, str, str]:
        result, exit_ = sent[token]
        return result.code, result.reason, result.vendor_msg_id, exit_

    return ((key, list(tokens)) for key, tokens in itertools.groupby(accepted, shared))


def values_of(per_token: dict[str, str], tokens: list[str]) -> list[str]:
    """Each token's value in a per_token() map, in order ("" for each when the batch carried none)."""
    return [per_token.get(t, "") for t in tokens] if per_token else [""] * len(tokens)


FEEDBACK_OUTCOMES = frozenset({Outcome.INVALID_TOKEN, Outcome.REJECTED})  # those feedback_event may answer for


def feedback_event(batch: Record, token: str, pin: str, result: TokenResult) -> Record | None:
    """The DeviceEvent telling fan-out to stop targeting a dead token or a switched-off device."""
    if result.outcome == "invalid_token":
        kind = "invalid_token"
    elif result.outcome == "rejected" and result.reason == SWITCHED_OFF:
        kind = "switch_off"
    else:
        return None
    return codec.new_record("DeviceEvent", app_id=batch["app_id"], token=token, kind=kind, pin=pin or None,
                            vendor=batch["vendor"], reason=f"{result.code} {result.reason}".strip(), ts=now_ms())


class Sender:
    def __init__(self, policy: DispatchPolicy, configs: dict[str, VendorConfig], ledger: SendLedger,
                 callback_url: Callable[[str, str], str] | None = None, rate_share: float = 1.0) -> None:
        """`callback_url(vendor, app)`: where a vendor that takes one with each send posts its receipts.
        `rate_share`: this sender's part of each configured rate: 1 / the dispatch subtasks, each of which may send
        any (app, vendor)'s batches, so that together they stay within the rate the vendor grants."""
        self.policy = policy
        self.rate_share = rate_share
        self.callback_url = callback_url or (lambda vendor, app_id: "")
        self.configs = configs
        self.ledger = ledger
        self.expiries: dict[tuple[str, str], dict[str, float]] = {}  # when each exit's credentials expire (metrics.ExitCredentials)
        self.exits = {vendor: self._exits(vendor, config) for vendor, config in configs.items()}
        self.limiters: dict[tuple[str, str], AdaptiveRateLimiter] = {}

    def _exits(self, vendor: str, config: VendorConfig) -> list[Exit]:
        return [Exit(vendor, spec, dataclasses.replace(cast(Any, config), **spec.overrides) if spec.overrides else config,
                     CircuitBreaker(self.policy.failure_threshold, self.policy.open_s),
                     metrics.ExitCredentials(vendor, spec.name, self.expiries))
                for spec in self.policy.exits_for(vendor)]

    def limiter(self, app_id: str, vendor: str) -> AdaptiveRateLimiter:
        key = (app_id, vendor)
        if key not in self.limiters:
            rate = self.policy.rate_for(app_id, vendor) * self.rate_share
            self.limiters[key] = AdaptiveRateLimiter(rate, min_rate=max(1.0, rate / 100))
        return self.limiters[key]

    async def dispatch(self, batch: Record) -> list[Output]:
        sent_at = now_ms()
        pins, profiles = per_token(batch, "pins"), per_token(batch, "profiles")
        outcomes = Outcomes()
        if sent_at > batch["expires_at"]:
            for t in batch["tokens"]:
                outcomes.add(t, pins.get(t, ""), "expired", "ttl", "past its TTL before it could be sent", profile=profiles.get(t, ""))
            return [("result", codec.encode("DispatchResult", result_record(batch, outcomes, sent_at)))]
        claim = self.ledger.claim(batch["app_id"], batch["msg_id"], batch["tokens"])
        metrics.LEDGER.labels("skipped").inc(len(claim.already_sent))
        metrics.LEDGER.labels("resent").inc(len(claim.in_doubt))
        for t in claim.already_sent:
            outcomes.add(t, pins.get(t, ""), "accepted", "ledger", "sent before a restart", profile=profiles.get(t, ""))
        outputs: list[Output] = []
        if claim.send:
            sent = await self.deliver(batch, claim.send)
            accepted, failed = split_accepted(claim.send, sent)
            self._settle(batch, claim, accepted, failed)
            retry = [t for t in failed if self._retries(batch, sent[t][0])]  # an accepted token is never sent again
            self._add_outcomes(outcomes, sent, pins, profiles, accepted, failed, retry)
            outputs += self._feedback(batch, sent, failed, pins)
            if retry:
                outputs.append(("retry", codec.encode("DispatchBatch", self._retry(batch, sent, retry))))
        outputs.append(("result", codec.encode("DispatchResult", result_record(batch, outcomes, sent_at))))
        return outputs

    def _retries(self, batch: Record, result: TokenResult) -> bool:
        """Is this token sent again? One that reached no vendor (every exit open) waits for the vendor until its
        TTL (then it expires); others while the retry budget lasts, counting only the sends that were made."""
        if result.code in HELD:
            return True
        return self.policy.retry.retries(result.outcome, batch["attempt"] - batch.get("held", 0))

    def _retry(self, batch: Record, sent: Sent, retry: list[str]) -> Record:
        """The next attempt for `retry`, held back by the longest backoff (or Retry-After) among them, or, when
        every exit of the vendor was down, until one lets a probe through.

        Never waited for here: PyFlink's async operator ends each bundle by waiting for every call
        in flight, so one sleeping batch would stall all the others.
        """
        held = all(sent[t][0].code in HELD for t in retry)
        if held:
            delay = self.until_probe_s(batch["vendor"]) * (1 + random.random() * self.policy.retry.jitter)
        else:
            delay = max(self.policy.retry.delay_s(batch["attempt"] - batch.get("held", 0), sent[t][0].retry_after_s) for t in retry)
        metrics.RETRIES.labels(batch["vendor"]).inc(len(retry))
        retried = subset(batch, retry, batch["attempt"] + 1, now_ms() + int(delay * 1000))
        return {**retried, "held": batch.get("held", 0) + held}

    def until_probe_s(self, vendor: str) -> float:
        """Seconds until the first of the vendor's exits lets a probe call through (at least one)."""
        return max(1.0, min((e.breaker.until_probe_s() for e in self.exits.get(vendor, [])), default=1.0))

    @staticmethod
    def _add_outcomes(outcomes: Outcomes, sent: Sent, pins: dict[str, str], profiles: dict[str, str], accepted: list[str],
                      failed: list[str], retry: list[str]) -> None:
        retrying = set(retry)
        for t in failed:
            r, exit_ = sent[t]
            outcomes.add(t, pins.get(t, ""), r.outcome, r.code, r.reason, exit_, r.vendor_msg_id, t not in retrying,
                         profile=profiles.get(t, ""))
        for (code, reason, vendor_msg_id, exit_), tokens in accepted_runs(accepted, sent):
            outcomes.add_accepted(tokens, values_of(pins, tokens), values_of(profiles, tokens), code, reason, vendor_msg_id, exit_)

    def _feedback(self, batch: Record, sent: Sent, failed: list[str], pins: dict[str, str]) -> list[Output]:
        events = [feedback_event(batch, t, pins.get(t, ""), sent[t][0]) for t in failed
                  if sent[t][0].outcome in FEEDBACK_OUTCOMES and not sent[t][1].startswith("fallback:")]
        return [("feedback", codec.encode("DeviceEvent", e)) for e in events if e is not None]

    def _settle(self, batch: Record, claim: Claim, accepted: list[str], failed: list[str]) -> None:
        self.ledger.settle(claim, accepted, failed)
        if accepted:
            due = batch.get("due_at") or batch["requested_at"]
            metrics.DUE_TO_ACCEPTED.labels(batch["vendor"], batch["priority"]).observe(max(0, now_ms() - due) / 1000)

    async def deliver(self, batch: Record, tokens: list[str]) -> Sent:
        vendor = batch["vendor"]
        if vendor not in self.exits:
            return {t: (TokenResult(t, Outcome.REJECTED, "no_vendor_config", f"vendor {vendor!r} is not configured"), "")
                    for t in tokens}
        exit_ = choose_exit(self.exits[vendor])
        if exit_ is None:
            return await self.fall_back(batch, tokens)
        probe = exit_.breaker.state != "closed"
        sent = await self.call(exit_, batch, tokens, tokens)
        return held_after_probe(sent) if probe else sent

    async def call(self, exit_: Exit, batch: Record, tokens: list[str], vendor_tokens: list[str],
                   label: str = "") -> Sent:
        """Send `vendor_tokens` through one exit; results are keyed by the batch's own `tokens`."""
        limiter = self.limiter(batch["app_id"], exit_.vendor)
        await limiter.acquire(len(tokens), batch["priority"])
        adapter = await exit_.ready()
        note = notification_of(batch, self.callback_url(exit_.vendor, batch["app_id"]))
        parts = [vendor_tokens[i : i + adapter.max_batch] for i in range(0, len(vendor_tokens), adapter.max_batch)]
        started = time.monotonic()
        results = [r for part in await asyncio.gather(*(adapter.send(note, p) for p in parts)) for r in part]
        self._observe(exit_, batch["app_id"], results, time.monotonic() - started, limiter)
        name = label or exit_.spec.name
        return {token: (result, name) for token, result in zip(tokens, results, strict=False)}

    def _observe(self, exit_: Exit, app_id: str, results: list[TokenResult], seconds: float,
                 limiter: AdaptiveRateLimiter) -> None:
        name = exit_.spec.name
        metrics.CALLS.labels(exit_.vendor, name).observe(seconds)
        exit_.breaker.record(success=any(r.outcome != "unavailable" for r in results))
        state = {"closed": 0.0, "half_open": 0.5, "open": 1.0}[exit_.breaker.state]
        metrics.BREAKER.labels(exit_.vendor, name).set(state)
        limiter.on_throttled() if any(r.outcome == "throttled" for r in results) else limiter.on_success()
        metrics.RATE.labels(app_id, exit_.vendor).set(limiter.rate)
        for (outcome, detail), count in Counter((r.outcome, r.code or r.reason) for r in results).items():
            metrics.TOKENS.labels(exit_.vendor, name, str(outcome), detail).inc(count)

    async def fall_back(self, batch: Record, tokens: list[str]) -> Sent:
        """Every exit of the vendor is open: send through the fallback channel where the device has a token."""
        sent = {t: (TokenResult(t, Outcome.UNAVAILABLE, CIRCUIT_OPEN, f"every {batch['vendor']} exit is open"), "")
                for t in tokens}
        fallback = self.policy.fallback
        mapped = [t for t in tokens if t in batch["fallback_tokens"]]
        exit_ = choose_exit(self.exits[fallback]) if fallback and fallback != batch["vendor"] and fallback in self.exits else None
        if exit_ is not None and mapped:
            sent |= await self.call(exit_, batch, mapped, [batch["fallback_tokens"][t] for t in mapped],
                                    label=f"fallback:{exit_.spec.name}")
            metrics.FALLBACKS.labels(batch["vendor"], fallback).inc(len(mapped))
        # held back, not sent: counted too, so the failure rate an alert reads stays up while the breakers are open
        held = sum(1 for result, _ in sent.values() if result.code == CIRCUIT_OPEN)
        metrics.TOKENS.labels(batch["vendor"], "none", str(Outcome.UNAVAILABLE), CIRCUIT_OPEN).inc(held)
        return sent

    async def aclose(self) -> None:
        adapters = [e.adapter for exits in self.exits.values() for e in exits if e.adapter is not None]
        await asyncio.gather(*(a.aclose() for a in adapters), return_exceptions=True)
        self.ledger.close()
