"""Business counters of a PyFlink operator, through Flink's metric system, so Flink's Prometheus reporter exports
them beside its own (e.g. flink_taskmanager_job_task_operator_stage_..._pushpipe_requests_in{stage="intake"}).

Labels must stay few: pass codes (a reason's prefix, an outcome, a topic), never ids, tokens or free text.

What Prometheus sees: each label is a Flink key/value group, so its key joins the metric's name (keys in sorted order)
and its value becomes the label's, beside Flink's own (job_name, operator_name, subtask_index, ...):
count("pushpipe_tokens", vendor=..., outcome=..., code=..., final=...) is
flink_taskmanager_job_task_operator_stage_code_final_outcome_vendor_pushpipe_tokens{stage="message_totals", vendor=...}.
The reporter exports a counter as a gauge of its count (no _total suffix) and turns each character of a label value
outside [a-zA-Z0-9:_] into "_" ("message-totals" -> "message_totals", "0.5" -> "0_5").
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pushpipe.jobs.deadletters import DLQ
from pushpipe.schemas import codec

log = logging.getLogger("pushpipe.jobs")
MAX_LABEL_CHARS = 40
LE_INF = "Inf"  # the last bucket's bound: "+Inf" would reach Prometheus as "_Inf"; histogram_quantile reads "Inf" as +Inf


ENABLED = os.environ.get("PUSHPIPE_STAGE_METRICS", "true").lower() not in ("0", "false", "no", "off")  # Settings.stage_metrics


class StageCounters:
    def __init__(self, runtime_context: Any, stage: str) -> None:
        self.group: Any = None
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        if not ENABLED:  # read from the environment: operators run in worker interpreters, not the job's main one
            return
        try:
            self.group = runtime_context.get_metrics_group().add_group("stage", stage)
        except Exception as bad:  # noqa: BLE001 - a metrics failure must not stop the pipeline
            log.warning("no metrics for %s: %s", stage, bad)

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        counter = self._counter(name, labels) if n > 0 else None
        if counter is not None:
            counter.inc(n)

    def observe(self, name: str, values: Sequence[int], buckets: Sequence[int], **labels: str) -> None:
        """`values` (whole numbers >= 0) into a Prometheus histogram made of counters: name_bucket{le} for each bound
        in `buckets` and for le="Inf" (cumulative: a value counts in every bucket whose bound is at least it),
        name_count and name_sum; one increment per counter for all the values (each is a call into the JVM). The
        bounds are whole numbers, which the reporter leaves as they are (it would make "0.5" "0_5", which
        histogram_quantile cannot read); every bucket is exported, at 0, from the first value of its labels on."""
        if not values:
            return
        for le, bound in [*((str(b), b) for b in buckets), (LE_INF, None)]:
            bucket = self._counter(f"{name}_bucket", {**labels, "le": le})
            reached = len(values) if bound is None else sum(1 for v in values if v <= bound)
            if bucket is not None and reached:
                bucket.inc(reached)
        self.count(f"{name}_count", len(values), **labels)
        self.count(f"{name}_sum", sum(values), **labels)

    def _counter(self, name: str, labels: dict[str, str]) -> Any:
        """The Flink counter of (name, labels), registered on first use; None without metrics."""
        if self.group is None:
            return None
        key = (name, tuple(sorted(labels.items())))
        counter = self._counters.get(key)
        if counter is None:
            group = self.group
            for label, value in key[1]:
                group = group.add_group(label, value[:MAX_LABEL_CHARS] or "none")
            counter = self._counters[key] = group.counter(name)
        return counter


def reason_code(reason: str) -> str:
    """A reason's code, for a label: "frequency_cap:marketing" -> "frequency_cap", "title is 60 ..." -> "title"."""
    return reason.split(":", 1)[0].split(" ", 1)[0][:MAX_LABEL_CHARS]


def counting_letters(counters: StageCounters, topic: str, items: Iterable[Any]) -> Iterator[Any]:
    """The items as they are, the dead letters among them counted by error and topic."""
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and item[0] is DLQ:
            counters.count("pushpipe_dead_letters", error=codec.decode("DeadLetter", item[1])["error"], topic=topic)
        yield item
