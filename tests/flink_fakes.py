"""Small stand-ins for Flink's keyed state, timer service and context, to run keyed functions without services."""
from __future__ import annotations

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
        self.items: dict = {}

    def get(self, key: Any) -> Any:
        return self.items.get(key)

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def remove(self, key: Any) -> None:
        self.items.pop(key, None)


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
