"""Dispatch policy, read once when the dispatch job starts: rate limits, exits, fallback, retry, breaker.

A JSON file (`PUSHPIPE_DISPATCH_FILE`); every key is optional:

    {"rates": {"default": 5000, "*/hms": 3000, "my-app/apns": 800,      # tokens/s per (app, vendor);
               "news-*/hms": 6000},                                    # app ids may be globs
     "exits": {"apns": [{"name": "apns-a", "weight": 3},
                        {"name": "apns-b", "weight": 1, "base_url": "https://..."}]},
     "fallback": "umeng",                                              # channel when a vendor is down
     "retry": {"max_attempts": 5, "base_s": 1, "max_delay_s": 300},   # waits go through push.retry
     "breaker": {"failure_threshold": 5, "open_s": 10}}

An exit is one way to a vendor (an endpoint or account) with a traffic weight; its keys other
than name and weight override the vendor's settings from the vendors file.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushpipe.jobs.retry import RetryPolicy


@dataclass(frozen=True)
class ExitSpec:
    name: str
    weight: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchPolicy:
    rates: dict[str, float] = field(default_factory=lambda: {"default": 5000.0})
    exits: dict[str, list[ExitSpec]] = field(default_factory=dict)
    fallback: str | None = "umeng"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failure_threshold: int = 5
    open_s: float = 10.0

    def rate_for(self, app_id: str, vendor: str) -> float:
        """The exact "app/vendor" key, else the first "app-pattern/vendor" glob that matches, else "*/vendor", else default."""
        if f"{app_id}/{vendor}" in self.rates:
            return float(self.rates[f"{app_id}/{vendor}"])
        for key, rate in self.rates.items():
            pattern, _, for_vendor = key.rpartition("/")
            if for_vendor == vendor and pattern != "*" and fnmatch.fnmatchcase(app_id, pattern):
                return float(rate)
        return float(self.rates.get(f"*/{vendor}", self.rates.get("default", 5000.0)))

    def exits_for(self, vendor: str) -> list[ExitSpec]:
        return self.exits.get(vendor) or [ExitSpec(name=vendor)]


def _exit(spec: dict[str, Any]) -> ExitSpec:
    spec = dict(spec)
    name, weight = spec.pop("name"), float(spec.pop("weight", 1.0))
    if weight <= 0:
        raise ValueError(f"exit {name}: weight must be positive")
    return ExitSpec(name, weight, spec)


KEYS = {"rates", "exits", "fallback", "retry", "breaker"}


def _known(section: str, given: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(given) - allowed
    if unknown:
        raise ValueError(f"dispatch policy: unknown {section} keys {sorted(unknown)} (known: {sorted(allowed)})")
    return given


def parse(document: dict[str, Any]) -> DispatchPolicy:
    """A validated policy; ValueError names the key that is wrong."""
    _known("top-level", document, KEYS)
    breaker = _known("breaker", document.get("breaker", {}), {"failure_threshold", "open_s"})
    retry = _known("retry", document.get("retry", {}), set(RetryPolicy.__dataclass_fields__))
    return DispatchPolicy(
        rates={"default": 5000.0, **document.get("rates", {})},
        exits={vendor: [_exit(e) for e in specs] for vendor, specs in document.get("exits", {}).items()},
        fallback=document.get("fallback", "umeng"),
        retry=RetryPolicy(**retry),
        failure_threshold=int(breaker.get("failure_threshold", 5)),
        open_s=float(breaker.get("open_s", 10.0)),
    )


# What `pushpipe up` writes for the embedded stack: two APNs exits (3:1) to show the split, and no
# limit for the benchmarks' apps (bench-*), so they measure the pipeline rather than the limiter.
EMBEDDED = {
    "rates": {"default": 5000, **{f"bench-*/{vendor}": 1_000_000 for vendor in ("apns", "hms", "fcm")}},
    "exits": {"apns": [{"name": "apns-a", "weight": 3}, {"name": "apns-b", "weight": 1}]},
    "fallback": "umeng",
    "retry": {"max_attempts": 5, "base_s": 0.5, "max_delay_s": 60},
    "breaker": {"failure_threshold": 5, "open_s": 5},
}


def load(path: Path) -> DispatchPolicy:
    """The policy in `path`, or the defaults when there is no such file."""
    return parse(json.loads(path.read_text())) if path.exists() else DispatchPolicy()


def write_embedded(path: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(EMBEDDED, indent=2) + "\n")
