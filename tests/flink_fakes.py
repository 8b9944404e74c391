"""Run keyed Flink functions without services: in-memory keyed state, a fake clock and timers.

`Harness(fn)` opens the function against a runtime context whose states are kept per key (as Flink's
are), and drives it: `process(message)` under the message's key (its first field), `advance(ms)` moves
the clock and fires the timers that come due, in order, each under its own key. Both return what the
function emitted; `metrics` holds what its counters counted (MetricGroup). The smaller stand-ins (Value, Listed,
Mapped, Context) serve tests of one call.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Value:
    def __init__(self) -> None:
        self.v: Any = None

    def value(self) -> Any:
        return self.v

    def update(self, v: Any) -> None:
        self.v = v

    def clear(self) -> None:
        self.v = None


class Listed:
    def __init__(self) -> None:
        self.items: list = []

    def add(self, item: Any) -> None:
        self.items.append(item)

    def get(self) -> list:
        return list(self.items)

    def clear(self) -> None:
        self.items = []


class Mapped:
    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def put_all(self, entries: dict[Any, Any]) -> None:
        for key, value in entries.items():
            self.put(key, value)

    def remove(self, key: Any) -> None:
        self.data.pop(key, None)

    def contains(self, key: Any) -> bool:
        return key in self.data

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.data.items())

    def is_empty(self) -> bool:
        return not self.data

    def clear(self) -> None:
        self.data = {}


class MetricGroup:
    """Flink's metric group as jobs/counting.py uses it: key/value groups and counters. `counts` holds each counter,
    from its registration on, by (name, its groups' (key, value) path), and is shared by all the groups under this one."""

    def __init__(self, path: tuple[tuple[str, str], ...] = (), counts: dict | None = None) -> None:
        self.path, self.counts = path, {} if counts is None else counts

    def add_group(self, key: str, value: str) -> MetricGroup:
        return MetricGroup((*self.path, (key, value)), self.counts)

    def counter(self, name: str) -> _Counter:
        self.counts.setdefault((name, self.path), 0)
        return _Counter(self.counts, (name, self.path))

    def count_of(self, name: str, **labels: str) -> int | None:
        """The count of the counter `name` whose groups are exactly `labels`; None if none was registered."""
        return next((n for (counted, path), n in self.counts.items() if counted == name and dict(path) == labels), None)


class _Counter:
    def __init__(self, counts: dict, key: tuple) -> None:
        self.counts, self.key = counts, key

    def inc(self, n: int = 1) -> None:
        self.counts[self.key] += n


class Timers:
    def __init__(self) -> None:
        self.now, self.pending = 5_000, set()

    def current_processing_time(self) -> int:
        return self.now

    def register_processing_time_timer(self, at: int) -> None:
        self.pending.add(at)

    def delete_processing_time_timer(self, at: int) -> None:
        self.pending.discard(at)


class Context:
    def __init__(self, key: str = "") -> None:
        self.timers = Timers()
        self.key = key

    def timer_service(self) -> Timers:
        return self.timers

    def get_current_key(self) -> str:
        return self.key


class Harness:
    """One keyed function, its state per key, and a clock that only moves when told to."""

    def __init__(self, fn: Any, now: int = 1_000_000) -> None:
        self.fn, self.now, self.key = fn, now, ""
        self.states: dict[tuple[str, str], Any] = {}
        self.timers: set[tuple[int, str]] = set()
        self.metrics = MetricGroup()
        fn.clock = lambda: self.now
        fn.open(_Runtime(self))

    def process(self, message: Any, key: str | None = None) -> list[Any]:
        self.key = message[0] if key is None else key
        return list(self.fn.process_element(message, _Ctx(self)) or ())

    def advance(self, ms: int) -> list[Any]:
        """Move the clock by `ms`, firing every timer due by then."""
        out: list[Any] = []
        until = self.now + ms
        while due := sorted(t for t in self.timers if t[0] <= until):
            at, self.key = due[0]
            self.timers.discard(due[0])
            self.now = max(self.now, at)
            out += list(self.fn.on_timer(at, _Ctx(self)) or ())
        self.now = until
        return out

    def state(self, name: str, key: str) -> Any:
        """The fake state `name` of `key` (created empty if the function never touched it)."""
        return self.states.get((name, key))

    def restore(self) -> None:
        """The function opened again on the state it had, as after a restore from a checkpoint."""
        self.fn.open(_Runtime(self))


class _Runtime:
    def __init__(self, harness: Harness) -> None:
        self.h = harness

    def get_state(self, descriptor: Any) -> Any:
        return _PerKey(self.h, descriptor.name, Value)

    def get_map_state(self, descriptor: Any) -> Any:
        return _PerKey(self.h, descriptor.name, Mapped)

    def get_list_state(self, descriptor: Any) -> Any:
        return _PerKey(self.h, descriptor.name, Listed)

    def get_metrics_group(self) -> MetricGroup:
        return self.h.metrics

    def get_index_of_this_subtask(self) -> int:
        return 0

    def get_number_of_parallel_subtasks(self) -> int:
        return 1


class _PerKey:
    """A state handle that reaches the state of the harness's current key, as Flink's keyed state does."""

    def __init__(self, harness: Harness, name: str, make: Callable[[], Any]) -> None:
        self._h, self._name, self._make = harness, name, make

    def __getattr__(self, attribute: str) -> Any:
        state = self._h.states.setdefault((self._name, self._h.key), self._make())
        return getattr(state, attribute)


class _Ctx:
    def __init__(self, harness: Harness) -> None:
        self.h = harness

    def timer_service(self) -> _Ctx:
        return self

    def current_processing_time(self) -> int:
        return self.h.now

    def register_processing_time_timer(self, at: int) -> None:
        self.h.timers.add((at, self.h.key))

    def delete_processing_time_timer(self, at: int) -> None:
        self.h.timers.discard((at, self.h.key))

    def get_current_key(self) -> str:
        return self.h.key
