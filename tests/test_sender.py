"""Sender behaviour at its adapter seam: scripted fake adapters, a real ledger file, no network."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import pytest

from pushpipe.connectors import registry
from pushpipe.connectors.base import Notification, Outcome, TokenResult, Vendor
from pushpipe.jobs import dispatch_policy
from pushpipe.jobs.breaker import CircuitBreaker
from pushpipe.jobs.dispatch_policy import DispatchPolicy, ExitSpec
from pushpipe.jobs.fanout import records
from pushpipe.jobs.ledger import SendLedger
from pushpipe.jobs.retry import RetryPolicy
from pushpipe.jobs.sender import Exit, Sender, choose_exit, now_ms
from pushpipe.producer import push_request
from pushpipe.schemas import codec
from pushpipe.schemas.results import token_outcomes


@dataclass(frozen=True)
class FakeConfig:
    vendor: ClassVar[Vendor] = Vendor.APNS
    name: str = "fake"


@dataclass
class FakeAdapter:
    """Answers each token from a script (token -> outcomes in order), accepted when the script runs out."""

    script: dict[str, list[Outcome]]
    vendor: Vendor = Vendor.APNS
    max_batch: int = 100
    sent: Counter = field(default_factory=Counter)

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def send(self, notification: Notification, tokens: list[str]) -> list[TokenResult]:
        results = []
        for token in tokens:
            self.sent[token] += 1
            queue = self.script.get(token, [])
            outcome = queue.pop(0) if queue else Outcome.ACCEPTED
            results.append(TokenResult(token, outcome, code="x", retry_after_s=0.01 if outcome == Outcome.THROTTLED else None))
        return results


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeAdapter]:
    adapters: dict[str, FakeAdapter] = {}

    def make(config: FakeConfig) -> FakeAdapter:
        return adapters.setdefault(config.name, FakeAdapter({}))

    for vendor in (Vendor.APNS, Vendor.UMENG):
        monkeypatch.setitem(registry.SPECS, vendor, replace(registry.SPECS[vendor], config=FakeConfig, adapter=make))
    return adapters


def sender(tmp_path: Path, policy: DispatchPolicy | None = None) -> Sender:
    configs = {"apns": FakeConfig("apns"), "umeng": FakeConfig("umeng")}
    return Sender(policy or DispatchPolicy(retry=RetryPolicy(base_s=0.01)), configs,
                  SendLedger(tmp_path / "ledger.db"))


def batch(tokens: list[str], fallback: dict[str, str] | None = None, attempt: int = 0, profiles: dict[str, str] | None = None) -> dict:
    request = push_request("app", ["u1"], "t", "b")
    targets = [(t, "u1", (fallback or {}).get(t, ""), (profiles or {}).get(t, "")) for t in tokens]
    return {**records.batch(request, "apns", targets, now_ms=1, position="pin:u1:0"), "attempt": attempt}


def decoded(outputs: list[tuple[str, bytes]], kind: str) -> list[dict]:
    names = {"result": "DispatchResult", "retry": "DispatchBatch", "feedback": "DeviceEvent"}
    return [codec.decode(names[k], v) for k, v in outputs if k == kind]


def test_transient_failures_go_through_the_retry_topic(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    s = sender(tmp_path, DispatchPolicy(retry=RetryPolicy(base_s=60)))
    fakes["apns"] = FakeAdapter({"t1": [Outcome.UNAVAILABLE]})
    outputs = asyncio.run(s.dispatch(batch(["t1", "t2"])))
    [result], [retry] = decoded(outputs, "result"), decoded(outputs, "retry")
    assert {o["token"]: o["final"] for o in token_outcomes(result)} == {"t1": False, "t2": True}
    assert retry["tokens"] == ["t1"] and retry["pins"] == ["u1"] and retry["attempt"] == 1
    assert retry["not_before"] > result["completed_at"] + 40_000
    [again] = decoded(asyncio.run(s.dispatch(retry)), "result")  # the retry is sent when it comes back
    assert token_outcomes(again)[0]["outcome"] == "accepted" and again["attempt"] == 1
    assert fakes["apns"].sent == Counter({"t1": 2, "t2": 1})


def test_retry_after_is_honoured(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    fakes["apns"] = FakeAdapter({"t1": [Outcome.THROTTLED]})
    outputs = asyncio.run(sender(tmp_path).dispatch(batch(["t1"])))
    [result], [retry] = decoded(outputs, "result"), decoded(outputs, "retry")
    assert retry["not_before"] >= result["completed_at"]  # base 10 ms, Retry-After 10 ms


def test_retries_stop_after_max_attempts(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    s = sender(tmp_path, DispatchPolicy(retry=RetryPolicy(max_attempts=2, base_s=0.01)))
    fakes["apns"] = FakeAdapter({"t1": [Outcome.UNAVAILABLE] * 5})
    [retry] = decoded(asyncio.run(s.dispatch(batch(["t1"]))), "retry")
    outputs = asyncio.run(s.dispatch(retry))
    [result] = decoded(outputs, "result")
    assert result["outcomes"][0]["outcome"] == "unavailable" and result["outcomes"][0]["final"]
    assert not decoded(outputs, "retry") and fakes["apns"].sent["t1"] == 2


def test_replay_skips_tokens_the_ledger_saw_accepted(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    b = batch(["t1", "t2"])
    asyncio.run(sender(tmp_path).dispatch(b))
    [result] = decoded(asyncio.run(sender(tmp_path).dispatch(b)), "result")
    assert fakes["apns"].sent == Counter({"t1": 1, "t2": 1})
    assert {o["code"] for o in token_outcomes(result)} == {"ledger"}


def test_invalid_tokens_become_device_feedback(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    fakes["apns"] = FakeAdapter({"dead": [Outcome.INVALID_TOKEN]})
    [event] = decoded(asyncio.run(sender(tmp_path).dispatch(batch(["dead", "ok"]))), "feedback")
    assert (event["token"], event["kind"], event["pin"], event["app_id"]) == ("dead", "invalid_token", "u1", "app")


def test_open_breaker_sends_through_the_fallback_channel(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    s = sender(tmp_path, DispatchPolicy(failure_threshold=1, open_s=60, retry=RetryPolicy(max_attempts=1)))
    fakes["apns"] = FakeAdapter({"t1": [Outcome.UNAVAILABLE]})
    asyncio.run(s.dispatch(batch(["t1"])))  # the failure opens the only APNs exit
    [result] = decoded(asyncio.run(s.dispatch(batch(["t2", "t3"], fallback={"t2": "umeng-t2"}))), "result")
    by_token = {o["token"]: o for o in token_outcomes(result)}
    assert by_token["t2"]["outcome"] == "accepted" and by_token["t2"]["exit"] == "fallback:umeng"
    assert by_token["t3"]["code"] == "circuit_open"  # no fallback token: retried later
    assert fakes["umeng"].sent == Counter({"umeng-t2": 1})


def test_weighted_exit_split_and_failover() -> None:
    def exit_(name: str, weight: float) -> Exit:
        return Exit("apns", ExitSpec(name, weight), FakeConfig(name), CircuitBreaker(failure_threshold=1, open_s=60))

    exits = [exit_("a", 3), exit_("b", 1)]
    picks = Counter(choose_exit(exits, rand=lambda x=i: x / 100).spec.name for i in range(100))
    assert picks == Counter({"a": 75, "b": 25})
    exits[0].breaker.record(False)
    assert {choose_exit(exits).spec.name for _ in range(20)} == {"b"}
    exits[1].breaker.record(False)
    assert choose_exit(exits) is None


def test_expired_batches_are_not_sent(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    b = {**batch(["t1"]), "expires_at": 1}
    [result] = decoded(asyncio.run(sender(tmp_path).dispatch(b)), "result")
    assert result["outcomes"][0]["outcome"] == "expired" and "apns" not in fakes


def test_accepted_tokens_travel_grouped_by_vendor_reply(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    fakes["apns"] = FakeAdapter({"dead": [Outcome.INVALID_TOKEN]})
    [result] = decoded(asyncio.run(sender(tmp_path).dispatch(batch(["t1", "dead", "t2"]))), "result")
    assert [o["token"] for o in result["outcomes"]] == ["dead"]
    [group] = result["accepted"]
    assert group["tokens"] == ["t1", "t2"] and group["pins"] == ["u1", "u1"] and group["exit"] == "apns"
    assert sorted(o["token"] for o in token_outcomes(result)) == ["dead", "t1", "t2"]


def test_tokens_wait_for_a_vendor_whose_exits_are_all_down_without_using_their_retries(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    s = sender(tmp_path, DispatchPolicy(failure_threshold=1, open_s=60, retry=RetryPolicy(max_attempts=2)))
    fakes["apns"] = FakeAdapter({"t1": [Outcome.UNAVAILABLE], "t2": [Outcome.UNAVAILABLE, Outcome.UNAVAILABLE]})
    asyncio.run(s.dispatch(batch(["t1"])))  # the failure opens the only APNs exit
    held = batch(["t2"])
    for _ in range(5):  # more attempts than the retry budget: still held, never failed
        outputs = asyncio.run(s.dispatch(held))
        [outcome] = token_outcomes(decoded(outputs, "result")[0])
        [held] = decoded(outputs, "retry")
        assert outcome["code"] == "circuit_open" and not outcome["final"]
    assert held["held"] == 5 and held["attempt"] == 5
    assert 55_000 <= held["not_before"] - now_ms() <= 75_000, "held until the breaker lets a probe through"
    s.exits["apns"][0].breaker = CircuitBreaker(failure_threshold=10, open_s=60)  # the vendor is back
    [retry] = decoded(asyncio.run(s.dispatch(held)), "retry")  # its first real send fails: its one retry is left
    outputs = asyncio.run(s.dispatch(retry))
    assert token_outcomes(decoded(outputs, "result")[0])[0]["final"] and not decoded(outputs, "retry")


PROFILES = {"t1": "Apple\x1fiPhone15,3\x1f17.4\x1f5.0", "t2": "Apple\x1fiPhone12,1\x1f16.7\x1f5.0", "dead": "Apple\x1f\x1f\x1f4.9"}


def test_profiles_and_environment_reach_the_result_and_the_retry(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    fakes["apns"] = FakeAdapter({"dead": [Outcome.INVALID_TOKEN], "t2": [Outcome.UNAVAILABLE]})
    test_batch = {**batch(["t1", "dead", "t2", "t3"], profiles=PROFILES), "environment": "test"}
    outputs = asyncio.run(sender(tmp_path).dispatch(test_batch))
    [result], [retry] = decoded(outputs, "result"), decoded(outputs, "retry")
    [group] = result["accepted"]
    assert group["tokens"] == ["t1", "t3"] and group["profiles"] == [PROFILES["t1"], ""]
    assert {o["token"]: o["profile"] for o in result["outcomes"]} == {"dead": PROFILES["dead"], "t2": PROFILES["t2"]}
    assert retry["tokens"] == ["t2"] and retry["profiles"] == [PROFILES["t2"]] and retry["pins"] == ["u1"]
    assert result["environment"] == "test"


def test_expired_and_ledger_skipped_tokens_keep_their_profiles(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    [expired] = decoded(asyncio.run(sender(tmp_path).dispatch({**batch(["t1"], profiles=PROFILES), "expires_at": 1})), "result")
    assert [o["profile"] for o in token_outcomes(expired)] == [PROFILES["t1"]]
    b = batch(["t1", "t2"], profiles=PROFILES)
    asyncio.run(sender(tmp_path).dispatch(b))
    [replayed] = decoded(asyncio.run(sender(tmp_path).dispatch(b)), "result")
    assert {o["token"]: (o["code"], o["profile"]) for o in token_outcomes(replayed)} == {
        "t1": ("ledger", PROFILES["t1"]), "t2": ("ledger", PROFILES["t2"])}


def test_a_batch_written_before_profiles_gives_outcomes_without_one(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    fakes["apns"] = FakeAdapter({"t2": [Outcome.UNAVAILABLE]})
    outputs = asyncio.run(sender(tmp_path).dispatch({**batch(["t1", "t2"]), "profiles": []}))
    [result], [retry] = decoded(outputs, "result"), decoded(outputs, "retry")
    assert [o["profile"] for o in token_outcomes(result)] == ["", ""] and retry["profiles"] == []


def test_each_of_n_subtasks_takes_its_share_of_the_rate_so_together_they_keep_it(tmp_path: Path) -> None:
    policy = dispatch_policy.parse({"rates": {"default": 100, "shop/apns": 50}})
    halves = [Sender(policy, {"apns": FakeConfig("apns")}, SendLedger(tmp_path / f"ledger-{n}.db"), rate_share=1 / 2) for n in range(2)]
    assert [s.limiter("shop", "apns").max_rate for s in halves] == [25, 25]
    assert sum(s.limiter("news", "apns").max_rate for s in halves) == 100
    whole = Sender(policy, {"apns": FakeConfig("apns")}, SendLedger(tmp_path / "ledger.db"))  # one subtask: the whole rate
    assert whole.limiter("shop", "apns").max_rate == 50
