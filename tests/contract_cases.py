"""One contract harness for every vendor adapter, fed a per-vendor table of cases.

A case names the kinds of tokens it sends, the simulator faults to switch on, adapter and
notification overrides, and the outcomes it expects, one per token. A vendor plugs in with a
`VendorHarness` (how to build its config and tokens) and its table; `test_<vendor>_contract.py`
parametrizes over `HARNESSES`. Everything runs against the real simulator process.
"""
from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal


from connectors.base import Notification, Outcome, TokenResult, Vendor, VendorAdapter, VendorConfig, create_adapter
from infra.simulators import SimulatorAdmin, apns_config
from pushpipe.config import Settings

TokenKind = Literal["valid", "unregistered", "malformed"]
A, INV, THR, UNA, REJ = (Outcome.ACCEPTED, Outcome.INVALID_TOKEN, Outcome.THROTTLED,
                         Outcome.UNAVAILABLE, Outcome.REJECTED)


@dataclass(frozen=True)
class Case:
    name: str
    tokens: tuple[TokenKind, ...]
    expect: tuple[Outcome, ...]  # one per token, in order
    sim: Mapping[str, Any] = field(default_factory=dict)  # POST /config for this case
    adapter: Mapping[str, Any] = field(default_factory=dict)  # vendor config overrides
    notification: Mapping[str, Any] = field(default_factory=dict)  # Notification overrides
    oversize: bool = False  # apply the harness's over-the-limit notification overrides
    codes: tuple[str, ...] | None = None  # expected TokenResult.code per token
    reasons: tuple[str, ...] | None = None  # expected TokenResult.reason per token
    retry_after_s: float | None = None  # expected on every throttled result
    sim_received: int | None = None  # requests the simulator must have seen (None: don't check)
    check_accepted: bool = True  # simulator's accepted count == expected accepted outcomes


@dataclass(frozen=True)
class VendorHarness:
    vendor: Vendor
    make_config: Callable[[Settings, Mapping[str, Any]], VendorConfig]
    valid_token: Callable[[str], str]  # unique token starting with the given prefix
    malformed_token: Callable[[str], str]
    oversize: Mapping[str, Any]  # Notification overrides that exceed the vendor's payload limit
    cases: tuple[Case, ...]

    def token(self, kind: TokenKind, prefix: str) -> str:
        return self.malformed_token(prefix) if kind == "malformed" else self.valid_token(prefix)


def notification(**overrides: Any) -> Notification:
    base = Notification(msg_id=uuid.uuid4().hex, app_id="contract", title="Hello", body="World",
                        data={"k": "v"})
    return replace(base, **overrides)


async def send_once(adapter: VendorAdapter, note: Notification, tokens: list[str]) -> list[TokenResult]:
    await adapter.open()
    try:
        return await adapter.send(note, tokens)
    finally:
        await adapter.aclose()


def run_case(h: VendorHarness, case: Case, settings: Settings) -> list[TokenResult]:
    """Configure the simulator, send once, restore the simulator, check everything the case says."""
    admin = SimulatorAdmin(settings.simulator_admin_url)
    prefix = secrets.token_hex(6)
    tokens = [h.token(kind, prefix) for kind in case.tokens]
    dead = [t for t, kind in zip(tokens, case.tokens, strict=True) if kind == "unregistered"]
    note = notification(**{**(h.oversize if case.oversize else {}), **case.notification})
    admin.reset(records=False)
    admin.configure(vendor=h.vendor.value, **case.sim, unregistered_tokens=dead)
    try:
        results = asyncio.run(send_once(create_adapter(h.vendor, h.make_config(settings, case.adapter)), note, tokens))
    finally:
        admin.reset(records=False)
    check_results(case, tokens, results)
    check_simulator(case, admin, prefix)
    return results


def check_results(case: Case, tokens: list[str], results: list[TokenResult]) -> None:
    assert [r.token for r in results] == tokens, "one result per token, in order"
    assert [r.outcome for r in results] == list(case.expect), results
    if case.codes is not None:
        assert tuple(r.code for r in results) == case.codes, results
    if case.reasons is not None:
        assert tuple(r.reason for r in results) == case.reasons, results
    for r in results:
        if r.outcome is Outcome.THROTTLED and case.retry_after_s is not None:
            assert r.retry_after_s == case.retry_after_s, r
        if r.outcome is Outcome.ACCEPTED:
            assert r.vendor_msg_id, r


def check_simulator(case: Case, admin: SimulatorAdmin, prefix: str) -> None:
    if case.check_accepted:
        assert admin.accepted(prefix)["count"] == case.expect.count(Outcome.ACCEPTED)
    if case.sim_received is not None:
        assert admin.stats(prefix)["received"] == case.sim_received


# ---- APNs ----------------------------------------------------------------------------------------

def apns_token(prefix: str) -> str:
    """64 hex characters starting with `prefix` (itself hex, so the token stays well-formed)."""
    int(prefix, 16)
    return (prefix + secrets.token_hex(32))[:64]


APNS_CASES = (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("200",) * 3),
    Case("unregistered", ("unregistered",), (INV,), codes=("410",), reasons=("Unregistered",)),
    Case("bad-device-token", ("malformed",), (INV,), codes=("400",), reasons=("BadDeviceToken",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A)),
    Case("throttled", ("valid", "valid"), (THR, THR), sim={"throttle_rate": 1.0, "retry_after_s": 7},
         codes=("429",) * 2, reasons=("TooManyRequests",) * 2, retry_after_s=7.0),
    Case("unavailable", ("valid",), (UNA,), sim={"unavailable_rate": 1.0}, codes=("503",)),
    Case("outage", ("valid", "malformed"), (UNA, UNA), sim={"outage": True},
         reasons=("ServiceUnavailable",) * 2),
    Case("outage-window", ("valid",), (UNA,), sim={"outage_s": 60}, codes=("503",)),
    Case("timeout", ("valid",), (UNA,), sim={"latency_ms": 1500}, adapter={"timeout_s": 0.3},
         codes=("timeout",), check_accepted=False),  # the vendor may still deliver it
    Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2,
         sim_received=0),
    Case("collapse-id-too-long", ("valid",), (REJ,), notification={"collapse_id": "c" * 65},
         reasons=("BadCollapseId",), sim_received=0),
    Case("background", ("valid",), (A,), notification={"title": "", "body": ""}),
)

APNS = VendorHarness(
    vendor=Vendor.APNS,
    make_config=lambda settings, overrides: apns_config(settings, **overrides),
    valid_token=apns_token,
    malformed_token=lambda prefix: prefix + "-not-hex",
    oversize={"data": {"blob": "x" * 5000}},
    cases=APNS_CASES,
)

HARNESSES = (APNS,)


