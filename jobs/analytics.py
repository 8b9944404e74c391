"""Analytics job: push.results -> ClickHouse (per-batch rows, per-minute view) + Elasticsearch (per message).

Results are gathered in one-second processing-time windows (held in Flink state, so a
crash replays them) and written in bulk; both sinks are idempotent, so replays after a
restart do not double count.

Run: python -m jobs.analytics
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from pyflink.common import Time, Types
from pyflink.datastream import ProcessFunction, RuntimeContext
from pyflink.datastream.functions import ProcessWindowFunction
from pyflink.datastream.window import TumblingProcessingTimeWindows

from jobs import common
from pushpipe.config import Settings, load
from sinks import clickhouse, elastic

JOB = "analytics"
WINDOW = Time.seconds(1)


class ParseResults(ProcessFunction):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def process_element(self, value: bytes, ctx: ProcessFunction.Context) -> Iterator[Any]:
        yield from common.decode_or_dlq(JOB, self.topic, "DispatchResult", value)


class WriteWindow(ProcessWindowFunction):
    """Writes one window of results to ClickHouse and Elasticsearch; raising makes Flink replay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, runtime_context: RuntimeContext) -> None:
        self.ch = clickhouse.connect(self.settings)
        self.es = elastic.connect(self.settings)
        elastic.ensure_index(self.es, self.settings.es_index)
        self.table = f"{self.settings.clickhouse_database}.dispatch_results"

    def process(self, key: int, context: ProcessWindowFunction.Context, elements: Iterable[dict]) -> Iterator[int]:
        results = list(elements)
        self.ch.insert(self.table, [clickhouse.result_row(r) for r in results])
        elastic.write_results(self.es, self.settings.es_index, results)
        yield len(results)

    def close(self) -> None:
        self.ch.close()
        self.es.close()


def build(settings: Settings) -> Any:
    env = common.environment(settings, JOB)
    topic = settings.topics.results
    parsed = common.kafka_source(env, settings, topic, f"pushpipe-{JOB}").process(ParseResults(topic)).name("parse-results")
    common.sink_dlq(parsed, settings)
    written = (
        parsed.key_by(lambda r: 0, key_type=Types.INT())  # one writer: few, fat bulk writes
        .window(TumblingProcessingTimeWindows.of(WINDOW))
        .process(WriteWindow(settings), output_type=Types.INT())
        .name("write-clickhouse-elasticsearch")
    )
    common.discard(written)
    return env


def main() -> None:
    common.setup_logging()
    build(load()).execute(JOB)


if __name__ == "__main__":
    main()
