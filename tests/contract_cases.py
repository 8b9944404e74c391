"""One contract harness for every vendor adapter, fed a per-vendor table of cases.

A case names the kinds of tokens it sends, the simulator faults to switch on, adapter and
notification overrides, and the outcomes it expects, one per token. A vendor plugs in with a
`VendorHarness` (how to build its config and tokens) and its table; `test_<vendor>_contract.py`
parametrizes over `HARNESSES`. Everything runs against the real simulator process.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pushpipe.config import Settings
from pushpipe.connectors.base import Notification, Outcome, TokenResult, Vendor, VendorAdapter, VendorConfig
from pushpipe.connectors.registry import create_adapter
from pushpipe.infra.simulators import SimulatorAdmin, apns_config, simulator_config

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
    resend: tuple[Outcome, ...] | None = None  # outcomes of a second send() by the same adapter, faults cleared


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


def note(**overrides: Any) -> Notification:
    """The fixed notification of the payload tests (stable msg_id, title, body and data)."""
    fields: dict[str, Any] = {"msg_id": "m-1", "app_id": "app", "title": "Hi", "body": "There", "data": {"order": "42"}}
    return Notification(**{**fields, **overrides})


async def send_once(adapter: VendorAdapter, note: Notification, tokens: list[str]) -> list[TokenResult]:
    """One send() through a freshly opened adapter, closed afterwards."""
    await adapter.open()
    try:
        return await adapter.send(note, tokens)
    finally:
        await adapter.aclose()


async def send_twice(adapter: VendorAdapter, note: Notification, tokens: list[str],
                     between: Callable[[], None]) -> tuple[list[TokenResult], list[TokenResult]]:
    """Two sends through one open adapter (so its cached credentials carry over); `between` runs between them."""
    await adapter.open()
    try:
        first = await adapter.send(note, tokens)
        await asyncio.to_thread(between)
        return first, await adapter.send(note, tokens)
    finally:
        await adapter.aclose()


def run_case(h: VendorHarness, case: Case, settings: Settings) -> list[TokenResult]:
    """Configure the simulator, send once (twice for `resend`), restore it, check everything the case says."""
    admin = SimulatorAdmin(settings.simulator_admin_url)
    prefix = secrets.token_hex(6)
    tokens = [h.token(kind, prefix) for kind in case.tokens]
    dead = [t for t, kind in zip(tokens, case.tokens, strict=True) if kind == "unregistered"]
    note = notification(**{**(h.oversize if case.oversize else {}), **case.notification})
    admin.reset(records=False)
    admin.configure(vendor=h.vendor.value, **case.sim, unregistered_tokens=dead)
    adapter = create_adapter(h.vendor, h.make_config(settings, case.adapter))
    again: list[TokenResult] = []
    try:
        if case.resend is None:
            results = asyncio.run(send_once(adapter, note, tokens))
        else:
            results, again = asyncio.run(send_twice(adapter, note, tokens, lambda: admin.reset(records=False)))
    finally:
        admin.reset(records=False)
    check_results(case, tokens, results)
    if case.resend is not None:
        assert [r.outcome for r in again] == list(case.resend), again
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
        expected = case.expect.count(Outcome.ACCEPTED) + (case.resend or ()).count(Outcome.ACCEPTED)
        assert admin.accepted(prefix)["count"] == expected
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

# ---- FCM HTTP v1 ---------------------------------------------------------------------------------

def fcm_token(prefix: str) -> str:
    """Shaped like an FCM registration token: '<instance id>:APA91b<base64url>'."""
    return f"{prefix}:APA91b{secrets.token_urlsafe(105)}"


def huawei_token(prefix: str) -> str:
    """Shaped like an HMS / Honor push token (long, base64-like)."""
    return f"{prefix}IQAAAACy{secrets.token_urlsafe(72)}"


def _rogue_service_account() -> str:
    """A well-formed service-account key the simulator has never seen (FCM answers invalid_grant)."""
    from pushpipe.simulators.fcm import new_service_account

    return json.dumps(new_service_account("pushpipe-demo"))


FCM_CASES = (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("200",) * 3),
    Case("unregistered", ("unregistered",), (INV,), codes=("404",), reasons=("UNREGISTERED",)),
    Case("invalid-token", ("malformed",), (INV,), codes=("400",), reasons=("INVALID_ARGUMENT",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A),
         codes=("200", "404", "400", "200")),
    Case("throttled", ("valid", "valid"), (THR, THR), sim={"throttle_rate": 1.0, "retry_after_s": 7},
         codes=("429",) * 2, reasons=("QUOTA_EXCEEDED",) * 2, retry_after_s=7.0),
    Case("unavailable", ("valid",), (UNA,), sim={"unavailable_rate": 1.0}, codes=("503",), reasons=("UNAVAILABLE",)),
    Case("outage", ("valid", "malformed"), (UNA, UNA), sim={"outage": True}, codes=("503",) * 2),
    Case("timeout", ("valid",), (UNA,), sim={"latency_ms": 1500}, adapter={"timeout_s": 0.3},
         codes=("timeout",), check_accepted=False),
    Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2,
         sim_received=0),
    Case("reserved-data-key", ("valid",), (REJ,), notification={"data": {"google.x": "1"}},
         reasons=("InvalidDataKey",), sim_received=0),
    Case("data-only", ("valid",), (A,), notification={"title": "", "body": ""}),
    Case("expired-access-token", ("valid",), (UNA,), sim={"access_token_ttl_s": 0}, codes=("401",),
         reasons=("UNAUTHENTICATED",), resend=(A,)),
    Case("unknown-service-account", ("valid", "valid"), (REJ, REJ), adapter={"service_account": _rogue_service_account()},
         codes=("400",) * 2, sim_received=0),
)

FCM = VendorHarness(
    vendor=Vendor.FCM,
    make_config=lambda settings, overrides: simulator_config(settings, "fcm", **overrides),
    valid_token=fcm_token,
    malformed_token=lambda prefix: prefix + "!not a token",
    oversize={"data": {"blob": "x" * 5000}},
    cases=FCM_CASES,
)


# ---- Huawei Push Kit v1 and Honor (Huawei-like) --------------------------------------------------

def huawei_style_cases(ok: str, partial: str, all_invalid: str, partial_reasons: tuple[str, ...]) -> tuple[Case, ...]:
    """The table both Huawei-like vendors pass; they differ only in result codes and reasons."""
    return (
        Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=(ok,) * 3),
        Case("unregistered", ("unregistered",), (INV,), codes=(all_invalid,)),
        Case("all-invalid", ("unregistered", "malformed"), (INV, INV), codes=(all_invalid,) * 2),
        Case("partial-success", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A),
             codes=(partial,) * 4, reasons=partial_reasons),
        Case("throttled", ("valid", "valid"), (THR, THR), sim={"throttle_rate": 1.0, "retry_after_s": 7},
             codes=("503",) * 2, retry_after_s=7.0),
        Case("unavailable", ("valid",), (UNA,), sim={"unavailable_rate": 1.0}, codes=("81000001",)),
        Case("outage", ("valid", "malformed"), (UNA, UNA), sim={"outage": True}, codes=("502",) * 2),
        Case("timeout", ("valid",), (UNA,), sim={"latency_ms": 1500}, adapter={"timeout_s": 0.3},
             codes=("timeout",), check_accepted=False),
        Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2,
             sim_received=0),
        Case("too-many-tokens", ("valid",) * 1001, (REJ,) * 1001, codes=("80300010",) * 1001),
        Case("data-only", ("valid",), (A,), notification={"title": "", "body": ""}),
        Case("expired-access-token", ("valid", "valid"), (UNA, UNA), sim={"access_token_ttl_s": 0},
             codes=("80200003",) * 2, resend=(A, A)),
        Case("wrong-client-secret", ("valid",), (REJ,), adapter={"client_secret": "not-the-secret"},
             codes=("401",), sim_received=0),
    )


HMS = VendorHarness(
    vendor=Vendor.HMS,
    make_config=lambda settings, overrides: simulator_config(settings, "hms", **overrides),
    valid_token=huawei_token,
    malformed_token=lambda prefix: prefix + "#not a token",
    oversize={"data": {"blob": "x" * 5000}},
    cases=huawei_style_cases("80000000", "80100000", "80300007", ("", "illegal token", "illegal token", "")),
)

HONOR = VendorHarness(
    vendor=Vendor.HONOR,
    make_config=lambda settings, overrides: simulator_config(settings, "honor", **overrides),
    valid_token=huawei_token,
    malformed_token=lambda prefix: prefix + "#not a token",
    oversize={"data": {"blob": "x" * 5000}},
    cases=huawei_style_cases("200", "200", "200", ("", "expireToken", "failToken", "")),
)

# ---- Xiaomi, OPPO, vivo, Meizu and Umeng (many tokens per request) -------------------------------

def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def xiaomi_token(prefix: str) -> str:
    """Shaped like a MiPush regid: 44 characters of base64."""
    return prefix + secrets.token_urlsafe(24).replace("-", "+").replace("_", "/")


def batch_harness(vendor: Vendor, valid_token: Callable[[str], str], oversize: Mapping[str, Any],
                  cases: tuple[Case, ...]) -> VendorHarness:
    return VendorHarness(vendor=vendor, valid_token=valid_token, oversize=oversize, cases=cases,
                         make_config=lambda settings, overrides: simulator_config(settings, vendor.value, **overrides),
                         malformed_token=lambda prefix: prefix + "!not a token")


def transient_cases(throttle_code: str, retry_after_s: float | None = None) -> tuple[Case, ...]:
    """Throttling, 5xx, outage and timeout: the same shape for every batch vendor."""
    throttle = {"throttle_rate": 1.0, "retry_after_s": 7}
    return (
        Case("throttled", ("valid", "valid"), (THR, THR), sim=throttle, codes=(throttle_code,) * 2,
             retry_after_s=retry_after_s),
        Case("unavailable", ("valid",), (UNA,), sim={"unavailable_rate": 1.0}, codes=("503",)),
        Case("outage", ("valid", "malformed"), (UNA, UNA), sim={"outage": True}, codes=("503",) * 2),
        Case("timeout", ("valid",), (UNA,), sim={"latency_ms": 1500}, adapter={"timeout_s": 0.3},
             codes=("timeout",), check_accepted=False),
    )


XIAOMI = batch_harness(Vendor.XIAOMI, xiaomi_token, {"data": {"blob": "x" * 4100}}, (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("0",) * 3),
    Case("unregistered", ("unregistered",), (INV,), codes=("20301",), reasons=("No valid targets!",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A), codes=("0",) * 4,
         reasons=("", "BadRegId", "BadRegId", "")),
    *transient_cases("10023"),
    Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2, sim_received=0),
    Case("title-too-long", ("valid",), (REJ,), notification={"title": "t" * 50}, reasons=("TitleTooLong",),
         sim_received=0),
    Case("data-only", ("valid",), (A,), notification={"title": "", "body": ""}),
    Case("collapse-id", ("valid",), (A,), notification={"collapse_id": "order-42"}),
    Case("wrong-app-secret", ("valid",), (REJ,), adapter={"app_secret": "not-the-secret"}, codes=("21301",)),
))

OPPO = batch_harness(Vendor.OPPO, lambda prefix: f"{prefix}CN_{secrets.token_hex(16)}", {"title": "t" * 51}, (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("0",) * 3),
    Case("unregistered", ("unregistered",), (INV,), codes=("10000",), reasons=("InvalidRegistrationId",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A),
         codes=("0", "10000", "10000", "0")),
    *transient_cases("-2"),
    Case("daily-limit", ("valid", "valid"), (THR, THR), sim={"daily_quota": 1}, codes=("33",) * 2),
    Case("title-too-long", ("valid",), (REJ,), oversize=True, reasons=("TitleTooLong",), sim_received=0),
    Case("body-too-long", ("valid",), (REJ,), notification={"body": "b" * 201}, reasons=("BodyTooLong",),
         sim_received=0),
    Case("no-title", ("valid",), (REJ,), notification={"title": ""}, reasons=("MissingTitle",), sim_received=0),
    Case("expired-auth-token", ("valid", "valid"), (UNA, UNA), sim={"auth_token_ttl_s": 0}, codes=("11",) * 2,
         resend=(A, A)),
    Case("wrong-master-secret", ("valid",), (REJ,), adapter={"master_secret": "not-the-secret"}, codes=("16",),
         sim_received=0),
))

VIVO = batch_harness(Vendor.VIVO, lambda prefix: prefix + _digits(12), {"data": {"blob": "x" * 1100}}, (
    Case("accepted-list", ("valid", "valid", "valid"), (A, A, A), codes=("0",) * 3),
    Case("accepted-single", ("valid",), (A,), codes=("0",)),
    Case("unregistered-single", ("unregistered",), (INV,), codes=("10302",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A),
         codes=("0", "invalidUsers.1", "invalidUsers.1", "0")),
    *transient_cases("429", retry_after_s=7.0),
    Case("daily-limit", ("valid", "valid"), (THR, THR), sim={"daily_quota": 1}, codes=("10070",) * 2),
    Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2, sim_received=0),
    Case("title-too-wide", ("valid",), (REJ,), notification={"title": "标" * 21}, reasons=("TitleTooLong",),
         sim_received=0),
    Case("system-message", ("valid",), (A,), notification={"category": "system"}),
    Case("expired-auth-token", ("valid", "valid"), (UNA, UNA), sim={"auth_token_ttl_s": 0},
         codes=("10000",) * 2, resend=(A, A)),
    Case("wrong-app-secret", ("valid",), (REJ,), adapter={"app_secret": "not-the-secret"}, codes=("10000",),
         sim_received=0),
))

MEIZU = batch_harness(Vendor.MEIZU, lambda prefix: f"{prefix}ULY{secrets.token_hex(16)}", {"body": "b" * 101}, (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("200",) * 3),
    Case("unsubscribed", ("unregistered",), (INV,), codes=("110002",), reasons=("Unsubscribed",)),
    Case("illegal-push-id", ("malformed",), (INV,), codes=("110003",), reasons=("IllegalPushId",)),
    Case("partial-batch", ("valid", "unregistered", "malformed", "valid"), (A, INV, INV, A),
         codes=("200", "110002", "110003", "200")),
    *transient_cases("110010"),
    Case("daily-limit", ("valid", "valid"), (THR, THR), sim={"daily_quota": 1}, codes=("110019",) * 2),
    Case("body-too-long", ("valid",), (REJ,), oversize=True, reasons=("BodyTooLong",), sim_received=0),
    Case("title-too-long", ("valid",), (REJ,), notification={"title": "t" * 33}, reasons=("TitleTooLong",),
         sim_received=0),
    Case("wrong-app-secret", ("valid",), (REJ,), adapter={"app_secret": "not-the-secret"}, codes=("1006",)),
    Case("over-vendor-batch-limit", ("valid",) * 101, (REJ,) * 101, adapter={"max_batch": 101},
         codes=("1005",) * 101),
))

UMENG = batch_harness(Vendor.UMENG, lambda prefix: prefix + secrets.token_urlsafe(33), {"data": {"blob": "x" * 4100}}, (
    Case("accepted", ("valid", "valid", "valid"), (A, A, A), codes=("SUCCESS",) * 3),
    Case("unregistered-is-accepted", ("valid", "unregistered"), (A, A), codes=("SUCCESS",) * 2),  # no per-token result
    *transient_cases("429", retry_after_s=7.0),
    Case("oversize", ("valid", "valid"), (REJ, REJ), oversize=True, reasons=("PayloadTooLarge",) * 2, sim_received=0),
    Case("no-title", ("valid",), (REJ,), notification={"title": ""}, reasons=("MissingTitle",), sim_received=0),
    Case("sandbox", ("valid",), (A,), notification={"environment": "sandbox"}),
    Case("wrong-master-secret", ("valid",), (REJ,), adapter={"app_master_secret": "not-the-secret"},
         codes=("2027",)),
    Case("over-vendor-batch-limit", ("valid",) * 501, (REJ,) * 501, adapter={"max_batch": 501},
         codes=("2015",) * 501),
))


HARNESSES = (APNS, FCM, HMS, HONOR, XIAOMI, OPPO, VIVO, MEIZU, UMENG)


