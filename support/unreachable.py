"""What a support command says when a store it reads does not answer: which one, and what to do."""
from __future__ import annotations

from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import KafkaException
from elastic_transport import ConnectionError as ElasticUnreachable
from elastic_transport import ConnectionTimeout

from pushpipe.config import Settings

# the errors of a store that did not answer (not of a bad query: those are bugs, and show as such)
ERRORS = (ElasticUnreachable, ConnectionTimeout, OperationalError, KafkaException,
          RuntimeError)  # PushProducer.flush: records Kafka did not take in time


def describe(settings: Settings, error: BaseException) -> str:
    """The store that did not answer, its address and the way out, in one sentence."""
    if isinstance(error, (ElasticUnreachable, ConnectionTimeout)):
        store = f"Elasticsearch at {settings.es_url}"
    elif isinstance(error, OperationalError):
        store = "ClickHouse"
    else:
        store = f"Kafka at {settings.kafka_bootstrap}"
    return f"{store} did not answer ({type(error).__name__}); is the stack up? (`pushpipe up`, then `pushpipe status`)"
