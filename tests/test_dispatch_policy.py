"""Pure dispatch policy: retry, circuit breaker, adaptive rate limit, send ledger."""
import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from pushpipe.jobs import dispatch_policy
from pushpipe.jobs.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from pushpipe.jobs.ledger import SendLedger
from pushpipe.jobs.ratelimit import AdaptiveRateLimiter
from pushpipe.jobs.retry import RetryPolicy
from pushpipe.schemas import keys


def test_retry_only_transient_outcomes_and_only_so_often() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.retries("throttled", 0) and policy.retries("unavailable", 1)
    assert not policy.retries("unavailable", 2)  # the third send was the last
    assert not policy.retries("invalid_token", 0) and not policy.retries("rejected", 0)


def test_backoff_grows_has_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_s=1, multiplier=2, jitter=0.2, max_delay_s=10)
    assert policy.delay_s(0, rand=lambda: 0.5) == 1.0
    assert policy.delay_s(2, rand=lambda: 0.5) == 4.0
    assert policy.delay_s(2, rand=lambda: 1.0) == pytest.approx(4.8)
    assert policy.delay_s(10, rand=lambda: 0.5) == 10.0  # capped
    assert policy.delay_s(0, retry_after_s=30, rand=lambda: 0.5) == 30.0


def test_breaker_opens_then_lets_one_probe_through() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, open_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record(False)
    assert breaker.state == OPEN
    now[0] = 20.0
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == CLOSED and breaker.allow()


def test_rate_limiter_halves_on_throttle_and_recovers_additively() -> None:
    limiter = AdaptiveRateLimiter(rate=100, min_rate=10, increase=5)
    limiter.on_throttled()
    assert limiter.rate == 50
    for _ in range(3):
        limiter.on_throttled()
    assert limiter.rate == 10  # floor
    limiter.on_success()
    assert limiter.rate == 15


def test_rate_limiter_paces_and_serves_high_priority_first() -> None:
    async def scenario() -> list[str]:
        limiter = AdaptiveRateLimiter(rate=200)
        await limiter.acquire(200)  # drain the burst
        order: list[str] = []

        async def send(name: str, priority: str) -> None:
            await limiter.acquire(20, priority)
            order.append(name)

        lows = [asyncio.create_task(send(f"low{i}", "low")) for i in range(3)]
        await asyncio.sleep(0)
        high = asyncio.create_task(send("high", "high"))
        await asyncio.gather(*lows, high)
        return order

    order = asyncio.run(scenario())
    assert order[0] == "high"


def test_ledger_skips_sent_tokens_and_resends_in_doubt_ones(tmp_path: Path) -> None:
    ledger = SendLedger(tmp_path / "ledger.db")
    first = ledger.claim("app", "m1", ["a", "b", "c"])
    assert first.send == ["a", "b", "c"] and not first.already_sent
    ledger.settle(first, accepted=["a"], not_sent=["b"])  # c stays in flight: then the process dies
    ledger.close()
    replay = SendLedger(tmp_path / "ledger.db").claim("app", "m1", ["a", "b", "c"])
    assert replay.already_sent == ["a"] and replay.in_doubt == ["c"] and replay.send == ["b", "c"]


def test_ledger_tokens_resent_after_a_crash_and_refused_are_no_longer_in_doubt(tmp_path: Path) -> None:
    SendLedger(tmp_path / "ledger.db").claim("app", "m1", ["a", "b"])  # in flight when the process dies
    ledger = SendLedger(tmp_path / "ledger.db")
    replay = ledger.claim("app", "m1", ["a", "b"])
    assert replay.in_doubt == ["a", "b"]
    ledger.settle(replay, accepted=["a"], not_sent=["b"])  # b refused: its marks go, from the crashed claim's row too
    ledger.close()
    again = SendLedger(tmp_path / "ledger.db").claim("app", "m1", ["a", "b"])
    assert again.already_sent == ["a"] and again.in_doubt == [] and again.send == ["b"]


def test_ledger_reads_again_the_marks_of_a_message_it_let_go_of(tmp_path: Path) -> None:
    ledger = SendLedger(tmp_path / "ledger.db", kept_tokens=1)
    ledger.settle(ledger.claim("app", "m1", ["a"]), accepted=["a"], not_sent=[])
    ledger.settle(ledger.claim("app", "m2", ["b"]), accepted=["b"], not_sent=[])  # m1's marks leave memory
    assert not any(marked[1] == "m1" for marked in ledger._marks)
    assert ledger.claim("app", "m1", ["a", "c"]).already_sent == ["a"]


def test_ledger_keeps_a_claim_as_a_row_per_token_shard_and_lets_go_of_shards_beyond_its_memory(tmp_path: Path) -> None:
    by_shard: dict[int, list[str]] = {}
    for n in range(200):
        by_shard.setdefault(keys.token_shard(f"t{n}"), []).append(f"t{n}")
    first, second = (tokens[:2] for tokens in list(by_shard.values())[:2])
    ledger = SendLedger(tmp_path / "ledger.db", kept_tokens=2)
    claim = ledger.claim("app", "m1", [*first, *second])
    assert ledger._db.execute("SELECT count(*) FROM shard_claims WHERE state = 1").fetchone() == (2,)  # a row per shard
    ledger.settle(claim, accepted=[*first, *second], not_sent=[])
    assert ledger._db.execute("SELECT count(*) FROM shard_claims").fetchone() == (2,)  # SENT rows; the claim's gone
    ledger.claim("app", "m1", first[:1])  # only this shard's marks stay in memory
    assert len(ledger._marks) == 1
    assert ledger.claim("app", "m1", [*second, *first]).already_sent == [*second, *first]


def test_ledger_settles_a_claim_that_names_a_token_twice(tmp_path: Path) -> None:
    ledger = SendLedger(tmp_path / "ledger.db")
    claim = ledger.claim("app", "m1", ["a", "a"])
    ledger.settle(claim, accepted=["a"], not_sent=[])
    assert ledger._db.execute("SELECT state FROM shard_claims").fetchall() == [(2,)]  # the claim's SENDING row is gone


def test_ledger_written_a_row_per_token_is_read_after_an_upgrade(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "ledger.db")
    old.execute("CREATE TABLE app_sends (app_id TEXT, msg_id TEXT, token TEXT, state INTEGER, at REAL, PRIMARY KEY (app_id, msg_id, token))")
    old.executemany("INSERT INTO app_sends VALUES (?, ?, ?, ?, ?)", [("app", "m1", "a", 2, time.time()), ("app", "m1", "b", 1, time.time()),
                                                                    ("app", "m2", "c", 2, time.time())])
    old.commit()
    old.close()
    ledger = SendLedger(tmp_path / "ledger.db")
    replay = ledger.claim("app", "m1", ["a", "b", "d"])
    assert replay.already_sent == ["a"] and replay.in_doubt == ["b"] and replay.send == ["b", "d"]
    assert ledger.claim("app", "m2", ["c"]).already_sent == ["c"]


def test_ledger_keeps_apps_apart(tmp_path: Path) -> None:
    ledger = SendLedger(tmp_path / "ledger.db")
    ledger.settle(ledger.claim("app-a", "m1", ["t"]), accepted=["t"], not_sent=[])
    other = ledger.claim("app-b", "m1", ["t"])
    assert other.send == ["t"] and not other.already_sent and not other.in_doubt


def test_policy_file_with_an_unknown_key_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="inline_max_s"):
        dispatch_policy.parse({"retry": {"inline_max_s": 2}})
    policy = dispatch_policy.parse(dispatch_policy.EMBEDDED)
    assert [e.name for e in policy.exits_for("apns")] == ["apns-a", "apns-b"] and policy.rate_for("x", "hms") == 5000


def test_rates_by_exact_app_then_app_glob_then_any_app_then_default() -> None:
    policy = dispatch_policy.parse({"rates": {"default": 10, "*/hms": 20, "news-*/hms": 30, "news-cn/hms": 40}})
    assert policy.rate_for("news-cn", "hms") == 40
    assert policy.rate_for("news-us", "hms") == 30
    assert policy.rate_for("shop", "hms") == 20
    assert policy.rate_for("news-us", "apns") == 10
