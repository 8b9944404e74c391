"""How a job runs on Flink: its environment and checkpoints, Kafka sources and sinks, its entry point.

Kafka values cross into Python as raw bytes and are decoded by the one codec (`schemas.codec`, see
jobs/deadletters.py), so a malformed record becomes a DeadLetter instead of a failure. The jars a job adds to
its classpath come in with its settings (`pipeline_jars`, set by the launcher in infra/jobs.py).
"""
from __future__ import annotations

import logging
import os
import site
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pyflink.common import Configuration, Row, Time, Types, WatermarkStrategy, typeinfo
from pyflink.common.serialization import ByteArraySchema
from pyflink.common.typeinfo import TypeInformation
from pyflink.datastream import DataStream, KeyedStream, OutputTag, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee, Sink
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.datastream.state import StateTtlConfig
from pyflink.java_gateway import get_gateway

import pushpipe
from pushpipe.config import Settings, load
from pushpipe.jobs.deadletters import DLQ
from pushpipe.stream_health import FLINK_METRICS

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
PROCESS_MODE_STATE = "pyflink.fn_execution.state_impl"  # where the state classes of process mode's Python workers live
EMBEDDED_RUNTIME_CONTEXT = "pyflink.fn_execution.datastream.embedded.runtime_context"  # thread mode's
log = logging.getLogger("pushpipe.jobs")
MAX_PARALLELISM = 128
# A broadcast's DispatchBatch and DispatchResult records run to tens of kilobytes: at the producer's default 16 KB
# each was a batch of its own, in a buffer allocated for it outside the producer's pool
PRODUCER_BATCH_BYTES = 256 * 1024


def checkpoint_uri(settings: Settings, job: str) -> str:
    """Where the job's checkpoints go: run/checkpoints/<job>, or on the cluster the shared directory every process reaches."""
    if settings.flink_mode == "cluster":
        return f"{settings.flink_shared_uri}/checkpoints/{job}"
    return (settings.run_dir / "checkpoints" / job).as_uri()


def local_dir(uri: str) -> Path | None:
    """The directory a file:// URI names; None for an object store's (its checkpoints are not searched for a restore)."""
    parts = urlsplit(uri)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest completed checkpoint (one with _metadata) under a job's checkpoint dir.

    Ordered by the _metadata file's time, not the folder's: a subsumed checkpoint whose discard
    was cut short by a stop keeps its _metadata, and the deletions make its folder look newest.
    """
    return _newest_written(directory.glob("*/chk-*/_metadata"))


def savepoint_uri(settings: Settings, job: str) -> str:
    """Where `pushpipe upgrade` stops the job with a savepoint: one directory per job beside the checkpoints."""
    return f"{settings.flink_shared_uri}/savepoints/{job}"


def latest_savepoint(directory: Path) -> Path | None:
    """The newest completed savepoint (savepoint-<jid>-<id>/_metadata) under a job's savepoint dir."""
    return _newest_written(directory.glob("savepoint-*/_metadata"))


def newest(*snapshots: Path | None) -> Path | None:
    """The snapshot (checkpoint or savepoint folder) whose _metadata was written last."""
    return _newest_written(s / "_metadata" for s in snapshots if s is not None)


def _newest_written(metadata: Iterable[Path]) -> Path | None:
    """The folder of the _metadata file written last (a completed checkpoint or savepoint), None if there is none."""
    done = list(metadata)
    return max(done, key=lambda m: m.stat().st_mtime).parent if done else None


def same_backend(directory: Path, backend: str) -> bool:
    """Whether the job's checkpoints were taken with `backend` (noted beside them). A checkpoint of another backend
    cannot be restored: the job then starts afresh from its committed Kafka offsets, the old checkpoints set aside."""
    noted = directory / "state-backend"
    before = noted.read_text().strip() if noted.exists() else backend_of(directory, backend)
    if before != backend:
        aside = directory.with_name(f"{directory.name}-{before}-{int(time.time())}")
        directory.rename(aside)
        log.warning("%s: its checkpoints were taken with the %s state backend, it now uses %s: starting afresh from "
                    "its committed Kafka offsets (old checkpoints in %s)", directory.name, before, backend, aside)
    directory.mkdir(parents=True, exist_ok=True)
    noted.write_text(backend)
    return before == backend


def backend_of(directory: Path, default: str) -> str:
    """The backend of checkpoints taken before backends were noted: RocksDB's incremental ones share files."""
    if latest_checkpoint(directory) is None:
        return default
    return "rocksdb" if any(directory.glob("*/shared/*")) else "hashmap"


def flink_config(settings: Settings, job: str, overrides: dict[str, str] | None = None) -> Configuration:
    """The job's Flink options. On the cluster (flink_mode cluster) the Python interpreter, addresses, temp dirs and
    metrics reporter are the cluster's own (infra/flinkcluster.py), and checkpoints go to its shared directory."""
    config = Configuration()
    chk = checkpoint_uri(settings, job)
    values = {
        "pipeline.name": job,
        "pipeline.jars": pipeline_jars(settings),  # on the cluster, `flink run` uploads them with the job
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms}ms",
        "execution.buffer-timeout.interval": f"{settings.flink_buffer_timeout_ms}ms",
        "execution.checkpointing.dir": chk,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        # key groups: a savepoint restores at another parallelism only with the same max parallelism (Flink's
        # default, 128 up to parallelism 85, said once here so that it never drifts)
        "pipeline.max-parallelism": str(MAX_PARALLELISM),
        "restart-strategy.type": "exponential-delay",
        # repeated failures (a worker killed again and again) wait at most 2 s, not minutes, and the
        # delay starts over after 2 quiet minutes (issue 19: every recovery within 30 s)
        "restart-strategy.exponential-delay.max-backoff": "2s",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "2min",
    }
    if settings.flink_mode == "embedded":
        values.update(mini_cluster(settings, job))
    values.update(overrides or {})
    local = local_dir(chk)
    restore = latest_checkpoint(local) if local is not None and same_backend(local, values.get("state.backend.type", "hashmap")) else None
    if settings.flink_mode == "cluster" and (saved := local_dir(savepoint_uri(settings, job))) is not None:
        # a job stopped with a savepoint (`pushpipe upgrade`) resumes from it, unless a checkpoint was taken since;
        # this option would override `flink run -s`, so it names the same savepoint
        restore = newest(restore, latest_savepoint(saved))
    if restore is not None:
        values["execution.state-recovery.path"] = str(restore)
        # operators have stable uids; state of operators a new version dropped is ignored
        values["execution.state-recovery.ignore-unclaimed-state"] = "true"
        log.info("%s resumes from %s", job, restore)
    for key, value in values.items():
        config.set_string(key, value)
    return config


def mini_cluster(settings: Settings, job: str) -> dict[str, str]:
    """The options of the job's own local mini-cluster (the embedded mode): this venv's Python, loopback, its port."""
    values = {
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "rest.bind-address": "127.0.0.1",
        "rest.port": str(settings.flink_rest_port(job)),
        # loopback only: the blob server and RPC bind to the job manager's host, data to the task manager's
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        # the stack's own temp files (Python worker dirs, RocksDB working dirs), not the machine's /tmp
        "io.tmp.dirs": str(settings.run_dir / f"job-{job}" / "tmp"),
    }
    if settings.stage_metrics:
        values.update(metrics_reporter(settings, job))
    return values


# State that grows with the install base (fan-out's device directory, analytics' token lifecycles): RocksDB with
# incremental checkpoints writes only what changed, where the heap backend copies all of it every checkpoint.
ROCKSDB_STATE = {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true",
                 "taskmanager.memory.managed.size": "1g",  # RocksDB block cache and write buffers
                 # Each checkpoint flushes a small file of keys spread over the whole key range; level
                 # compaction then rewrote the whole directory level with it (a steady ~14% of a core at
                 # 1M pins under single-pin traffic). Universal compaction merges small runs with each other.
                 "state.backend.rocksdb.compaction.style": "UNIVERSAL"}


def metrics_reporter(settings: Settings, job: str) -> dict[str, str]:
    """Flink's own metrics (records in/out per operator, backpressure, checkpoints, restarts, Kafka lag), pushed to
    Prometheus's Pushgateway every 5 s: Flink's scraped reporter has no bind address and would listen on every interface."""
    return {
        "metrics.reporter.promgateway.factory.class": "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory",
        "metrics.reporter.promgateway.hostUrl": settings.pushgateway_url,
        "metrics.reporter.promgateway.jobName": f"pushpipe-{job}",
        "metrics.reporter.promgateway.randomJobNameSuffix": "false",
        "metrics.reporter.promgateway.deleteOnShutdown": "true",
        "metrics.reporter.promgateway.interval": "5 SECONDS",
        "metrics.reporter.promgateway.filter.includes": ";".join(FLINK_METRICS),
    }


# How long a Python operator may hold records before it hands them on. In process mode a bundle goes to the Python
# worker at most this late: the latency it adds. Thread mode has no bundles (its finish-bundle does nothing), yet
# every Python operator's timer still wakes its task each period to check: at 20 ms, 50 wake-ups a second per
# operator for nothing (measured: the idle fan-out job, nine Python operators, took 22% of a core at 20 ms, 15% without).
BUNDLE_TIME_MS = {"process": "20", "thread": "60000"}


def environment(settings: Settings, job: str, overrides: dict[str, str] | None = None,
                mode: str = "process") -> StreamExecutionEnvironment:
    """The job's environment; `overrides` are Flink options for this job only.

    mode "thread" runs the Python operators inside the JVM (pemja): keyed state is a direct call
    instead of a round trip to a worker, ~10x faster for state over many keys (PYFLINK.md).
    PyFlink's async I/O needs "process": Python workers of their own, as on a cluster.
    On the cluster every job runs in "process" mode: a TaskManager's thread-mode interpreter lives as long as the
    TaskManager and keeps the modules it imported, so a job resubmitted with new code (`pushpipe upgrade`) would run
    the old one (measured: a fixed module kept failing with its old line numbers until the TaskManagers restarted).
    """
    if settings.flink_mode == "cluster":
        mode = "process"
    if settings.flink_mode == "embedded":  # on the cluster, its Python runs the operators with the files `flink run` shipped
        local_workers(mode)
    env = StreamExecutionEnvironment.get_execution_environment(
        flink_config(settings, job, {"python.execution-mode": mode, "python.fn-execution.bundle.time": BUNDLE_TIME_MS[mode],
                                     **(overrides or {})}))
    env.set_parallelism(settings.parallelism(job))
    return env


def ttl(duration: Time) -> StateTtlConfig:
    """A keyed state's time to live, cleaned up in RocksDB's compactions (every 1,000 entries, PyFlink's default).

    Built without a Java gateway, which a TaskManager's thread-mode Python does not have (it tries to launch one:
    FileNotFoundError, the job restarting). PyFlink's default background cleanup builds a compaction-filter strategy
    whose periodic compaction time is Duration.of_days(30), a gateway call, whenever its strategies are read, even
    when one is set (dict.get's default). So that default is off, the same strategy is set explicitly, and `duration`
    stands in for its periodic compaction time, which neither mode passes on to Java (java_utils,
    StateTtlConfig._to_proto)."""
    return (StateTtlConfig.new_builder(duration).disable_cleanup_in_background()
            .cleanup_in_rocksdb_compact_filter(1000, periodic_compaction_time=duration).build())


def put_all(state: Any, entries: dict[str, Any]) -> None:
    """MapState.put_all of a dict in either Python mode. Process mode's (pyflink/fn_execution/state_impl.py) iterates
    its argument as (key, value) pairs, where a dict gives only its keys ("too many values to unpack"); thread mode's
    takes the dict itself, in one call into the JVM."""
    state.put_all(entries.items() if type(state).__module__ == PROCESS_MODE_STATE else entries)


def subtask(runtime_context: RuntimeContext) -> tuple[int, int]:
    """(this subtask's index, the number of subtasks) in either Python mode. Thread mode's context calls
    RuntimeContext.getIndexOfThisSubtask, which Flink 2 moved to getTaskInfo() (AttributeError), so there it is
    read from the task info."""
    if in_jvm(runtime_context):
        info = runtime_context._runtime_context.getTaskInfo()
        return info.getIndexOfThisSubtask(), info.getNumberOfParallelSubtasks()
    return runtime_context.get_index_of_this_subtask(), runtime_context.get_number_of_parallel_subtasks()


def in_jvm(runtime_context: RuntimeContext) -> bool:
    """True when the function runs in thread mode: inside the JVM, one Python for all of the job's subtasks there."""
    return type(runtime_context).__module__ == EMBEDDED_RUNTIME_CONTEXT


def local_workers(mode: str) -> None:
    """How a mini-cluster in this process finds its Python workers' code."""
    if mode == "thread":  # the embedded interpreter imports pemja, pyflink and our packages from here
        paths = [str(Path(site.getsitepackages()[0])), str(Path(pushpipe.__file__).resolve().parents[1])]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    else:  # PyFlink's local default would run them inside this client process, sharing one GIL
        os.environ["_python_worker_execution_mode"] = "process"


def kafka_source(env: StreamExecutionEnvironment, settings: Settings, topics: str | list[str], group: str) -> DataStream:
    """Raw values of the topics, from the group's committed offsets (earliest the first time)."""
    names = [topics] if isinstance(topics, str) else topics
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(*names)
        .set_group_id(group)
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
        .set_property("partition.discovery.interval.ms", "10000")
        .set_property("commit.offsets.on.checkpoint", "true")
    )
    builder._j_builder.setDeserializer(get_gateway().jvm.pushpipe.TombstoneMarkingSchema())  # bytes, tombstones marked
    source = builder.build()
    name = f"kafka:{','.join(names)}"
    return env.from_source(source, WatermarkStrategy.no_watermarks(), name).uid(name)


def kafka_sink(settings: Settings, topic: str) -> KafkaSink:
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(ByteArraySchema())
        .build()
    )
    return (
        KafkaSink.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_record_serializer(serializer)
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .set_property("acks", "all")  # with min.insync.replicas 2 of 3 (infra/kafka.py), a broker's loss loses nothing
        .set_property("enable.idempotence", "true")  # a retried send is written once
        .set_property("linger.ms", "5")
        .set_property("batch.size", str(PRODUCER_BATCH_BYTES))
        .set_property("compression.type", "lz4")
        .build()
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def pipeline_jars(settings: Settings) -> str:
    if not settings.pipeline_jars:
        raise RuntimeError("PUSHPIPE_PIPELINE_JARS is not set: start jobs with `pushpipe up`, which builds the jars and sets it")
    return settings.pipeline_jars


def sink_dlq(stream: DataStream, settings: Settings) -> None:
    side_output(stream, DLQ).sink_to(kafka_sink(settings, settings.topics.dlq)).name("dlq")


# How records reach a keyed Python stage and a side output's consumer without PyFlink's extra operators. Its
# `union(...).key_by(f)` computes the key in a Python operator after the union (`_stream_key_by_map_operator` in the
# job graph): a task of its own, so each record paid another Python call, a hand-off between threads and a network
# hop (measured at 300 single-pin requests/s: those tasks took 120 ms of CPU a second, ~400 µs a request, across the
# three jobs). And `get_side_output` passes every record through a Python identity map.

def side_output(stream: DataStream, tag: OutputTag) -> DataStream:
    """What a Python operator yields with `tag`, as it yields it (no identity map)."""
    return DataStream(stream._j_data_stream.getSideOutput(tag.get_java_output_tag()))


def keyed(key_of: Callable[[Any], Any], *streams: DataStream, key_type: TypeInformation | None = None) -> KeyedStream:
    """The union of the streams (all of one type), keyed by key_of: each record's key is computed in a Python map
    chained to the operator that made it, and the union is keyed in Java on that key (as PyFlink's own key_by does
    after its map, so a key lands in the same key group, and a checkpoint's keyed state restores, as before)."""
    key_type = key_type or Types.STRING()
    value_type = typeinfo._from_java_type(streams[0]._j_data_stream.getTransformation().getOutputType())
    with_keys = [stream.map(lambda value: Row(key_of(value), value), output_type=Types.ROW([key_type, value_type]))
                 .name("key") for stream in streams]
    united = with_keys[0].union(*with_keys[1:])
    by_key = united._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(), Types.ROW([key_type]).get_java_type_info())
    return KeyedStream(by_key, value_type, united)


# HTTP clients that log every request at INFO (httpx: vendor calls; elastic_transport: every bulk request)
CHATTY_CLIENT_LOGGERS = ("httpx", "httpcore", "elastic_transport")


def quiet_logs() -> None:
    """From a function's open(): the Python hands each log record to the JVM (process mode over gRPC, thread mode
    through pemja), so a line per request costs CPU on the hot path and buries what on-call looks for; the clients'
    warnings still show. Thread mode's pemja also sets the root logger to DEBUG, so every library's debug line was
    formatted and handed over for the JVM's log4j to drop (hpack logs each header it encodes: seen in py-spy dumps
    of the dispatch JVM): INFO is the floor."""
    root = logging.getLogger()
    if root.getEffectiveLevel() < logging.INFO:
        root.setLevel(logging.INFO)
    for name in CHATTY_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run(build: Callable[[Settings], StreamExecutionEnvironment], job: str) -> None:
    """A job's entry point: build its graph from the settings and run it until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    build(load()).execute(job)


def discard(stream: DataStream) -> None:
    """Ends a stream whose operator works by side effect (Flink drops operators without a sink)."""
    j_sink = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    stream.sink_to(Sink(j_sink)).name("discard")
