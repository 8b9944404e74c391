"""Business counters of a PyFlink operator, through Flink's metric system, so Flink's Prometheus reporter exports
them beside its own (e.g. flink_taskmanager_job_task_operator_stage_..._pushpipe_requests_in{stage="intake"}).

Labels must stay few: pass codes (a reason's prefix, an outcome, a topic), never ids, tokens or free text.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from pushpipe.jobs.deadletters import DLQ
from pushpipe.schemas import codec

log = logging.getLogger("pushpipe.jobs")
MAX_LABEL_CHARS = 40


class StageCounters:
    def __init__(self, runtime_context: Any, stage: str) -> None:
        try:
            self.group = runtime_context.get_metrics_group().add_group("stage", stage)
        except Exception as bad:  # noqa: BLE001 - a metrics failure must not stop the pipeline
            log.warning("no metrics for %s: %s", stage, bad)
            self.group = None
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        if self.group is None or n <= 0:
            return
        key = (name, tuple(sorted(labels.items())))
        counter = self._counters.get(key)
        if counter is None:
            group = self.group
            for label, value in key[1]:
                group = group.add_group(label, value[:MAX_LABEL_CHARS] or "none")
            counter = self._counters[key] = group.counter(name)
        counter.inc(n)


def reason_code(reason: str) -> str:
    """A reason's code, for a label: "frequency_cap:marketing" -> "frequency_cap", "title is 60 ..." -> "title"."""
    return reason.split(":", 1)[0].split(" ", 1)[0][:MAX_LABEL_CHARS]


def counting_letters(counters: StageCounters, topic: str, items: Iterable[Any]) -> Iterator[Any]:
    """The items as they are, the dead letters among them counted by error and topic."""
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and item[0] is DLQ:
            counters.count("pushpipe_dead_letters", error=codec.decode("DeadLetter", item[1])["error"], topic=topic)
        yield item
