"""Apache Kafka in KRaft mode, run from the jars on Maven Central: one node, or `kafka_brokers` of them.

install(): a generated pom resolved by `mvn dependency:copy-dependencies` into
cache_dir/kafka-<version>/libs (Maven's local repository kept in cache_dir/maven-repo).
start(): format each node's storage once (one cluster id for all), then `java -cp 'libs/*' kafka.Kafka
server.properties` per node. Every node is a broker and a controller (KRaft combined mode); node i listens on
the i-th address of `kafka_bootstrap` and its controller one port above. With 3 or more brokers, topics are
replicated 3 times and a write needs 2 in-sync replicas (`min.insync.replicas`): with acks=all, as every
pushpipe producer writes, an acknowledged record survives the loss of any one broker.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic

from pushpipe.config import Settings
from pushpipe.infra import process
from pushpipe.infra.service import Health, Problem

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"  # the log4j2 that Kafka 4.1 ships with
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
JAVA_HOME_DEFAULT = "/usr/lib/jvm/java-17-openjdk-amd64"
CONTROLLER_OFFSET = 1  # controller port = broker port + 1 (19093 by default)
HEAP = "-Xmx512m"

DAY_MS = 24 * 3600 * 1000
RETENTION_MS = 7 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>pushpipe</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker + controller): the i-th address of kafka_bootstrap."""
    node_id: int
    host: str
    port: int

    @property
    def controller_port(self) -> int:
        return self.port + CONTROLLER_OFFSET

    @property
    def process_name(self) -> str:
        """Node 1 keeps the single-node layout's name: run/kafka."""
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"


def nodes(settings: Settings) -> list[Node]:
    return [Node(i, *_split(address)) for i, address in enumerate(settings.kafka_bootstrap.split(","), start=1)]


def replication(settings: Settings) -> int:
    """Copies of each partition: 3, or every broker when there are fewer."""
    return min(3, len(nodes(settings)))


def min_insync(settings: Settings) -> int:
    """In-sync replicas an acks=all write needs: all but one (at 3 replicas, 2)."""
    return max(1, replication(settings) - 1)


class Kafka:
    """Kafka in KRaft combined mode on settings.kafka_bootstrap: one node per address."""

    name = "kafka"
    version = KAFKA_VERSION

    # --- paths -----------------------------------------------------------------------
    def home(self, settings: Settings) -> Path:
        return settings.cache_dir / f"kafka-{self.version}"

    def libs(self, settings: Settings) -> Path:
        return self.home(settings) / "libs"

    def data_dir(self, settings: Settings, node: Node) -> Path:
        return process.service_dir(settings, node.process_name) / "data"

    def address(self, settings: Settings) -> str:
        return settings.kafka_bootstrap

    def process_names(self, settings: Settings) -> list[str]:
        """Its processes, one per node (what bench/cpu.py measures)."""
        return [node.process_name for node in nodes(settings)]

    # --- Service ---------------------------------------------------------------------
    def install(self, settings: Settings) -> None:
        """Resolve Kafka's runtime classpath into libs/ (skipped once complete)."""
        libs = self.libs(settings)
        marker = libs / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (mvn) is needed to resolve Kafka's jars: apt-get install -y maven")
        home = self.home(settings)
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(
            _POM.format(scala=SCALA_VERSION, kafka=self.version, log4j=LOG4J_VERSION)
        )
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        print(f"resolving Kafka {self.version} jars from Maven Central ...", file=sys.stderr)
        subprocess.run(
            [
                "mvn", "-B", "-q", "-Dstyle.color=never",
                f"-Dmaven.repo.local={settings.cache_dir / 'maven-repo'}",
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            cwd=home,
            check=True,
            env={**os.environ, "JAVA_HOME": _java_home()},
        )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(f"{self.version}\n")

    def start(self, settings: Settings) -> None:
        if self.health(settings).ok:
            return
        self.install(settings)
        cluster_id = self._cluster_id(settings)
        for node in nodes(settings):
            if not process.is_running(settings, node.process_name):  # a live node stays up (a quorum needs it)
                config = self._write_config(settings, node)
                self._format_storage(settings, node, config, cluster_id)
                process.start(settings, node.process_name, self._java(settings, node, "kafka.Kafka", str(config)))
        process.wait_until(
            lambda: self.health(settings).ok, 90, f"Kafka on {self.address(settings)}",
            settings=settings, name=self.name,
        )

    def restart(self, settings: Settings) -> None:
        """The supervisor's restart: the nodes that died come back; the others keep serving."""
        self.start(settings)

    def stop(self, settings: Settings) -> None:
        for node in reversed(nodes(settings)):
            process.stop(settings, node.process_name, timeout=30)

    def problem(self, settings: Settings) -> Problem | None:
        """A node whose process died (a node never started, or stopped on purpose, is none)."""
        for node in nodes(settings):
            pid = process.read_pid(settings, node.process_name)
            if pid is not None and not process.alive(pid):
                return Problem("died", f"broker {node.node_id} ({node.host}:{node.port}) died", 0.0)
        return None

    def health(self, settings: Settings) -> Health:
        try:
            metadata = _admin(settings).list_topics(timeout=3)
        except KafkaException as err:
            return Health(False, str(err))
        expected = len(nodes(settings))
        up = f"{len(metadata.brokers)} broker(s)" if len(metadata.brokers) == expected else f"{len(metadata.brokers)} of {expected} brokers"
        replicas = f", replication {replication(settings)}, min.insync {min_insync(settings)}" if expected > 1 else ""
        return Health(len(metadata.brokers) == expected, f"{up}, {len(metadata.topics)} topic(s){replicas}")

    # --- internals -------------------------------------------------------------------
    def _java(self, settings: Settings, node: Node, main: str, *args: str) -> list[str]:
        log4j = self.home(settings) / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        return [
            str(Path(_java_home()) / "bin" / "java"),
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={process.service_dir(settings, node.process_name)}",
            "-cp", f"{self.libs(settings)}/*",
            main, *args,
        ]

    def _write_config(self, settings: Settings, node: Node) -> Path:
        copies, insync = str(replication(settings)), str(min_insync(settings))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": _voters(settings),
            "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir(settings, node)),
            "num.partitions": str(settings.kafka_partitions),
            "default.replication.factor": copies,
            "min.insync.replicas": insync,
            "offsets.topic.replication.factor": copies,
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": insync,
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": insync,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        path = process.service_dir(settings, node.process_name) / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _cluster_id(self, settings: Settings) -> str:
        """The id every node's storage is formatted with, made once; refused for data formatted for another set of
        nodes (a quorum's voters are fixed when its storage is formatted)."""
        home, first = process.service_dir(settings, self.name), nodes(settings)[0]
        id_file, voters_file = home / "cluster.id", home / "voters"
        if (self.data_dir(settings, first) / "meta.properties").exists() and not id_file.exists():
            id_file.write_text(_meta_cluster_id(self.data_dir(settings, first)))  # formatted before ids were kept
            voters_file.write_text(f"1@{first.host}:{first.controller_port}")
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
            voters_file.write_text(_voters(settings))
        formatted_for = voters_file.read_text().strip() if voters_file.exists() else _voters(settings)
        if formatted_for != _voters(settings):
            raise RuntimeError(f"Kafka's data in {settings.run_dir} was formatted for the controllers {formatted_for}, not "
                               f"{_voters(settings)} (PUSHPIPE_KAFKA_BROKERS / PUSHPIPE_KAFKA_BOOTSTRAP changed): "
                               "`pushpipe down` and remove the run directory's kafka* folders to start afresh")
        return id_file.read_text().strip()

    def _format_storage(self, settings: Settings, node: Node, config: Path, cluster_id: str) -> None:
        """Write the node's meta.properties once; a formatted data dir is reused as is."""
        if (self.data_dir(settings, node) / "meta.properties").exists():
            return
        argv = self._java(settings, node, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config))
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Kafka storage format failed:\n{result.stdout}\n{result.stderr}")


def _voters(settings: Settings) -> str:
    return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes(settings))


def _meta_cluster_id(data_dir: Path) -> str:
    for line in (data_dir / "meta.properties").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    raise RuntimeError(f"no cluster.id in {data_dir / 'meta.properties'}")


def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics if missing, and bring existing ones to the configs of topic_config
    (idempotent); every config changed is said on stderr."""
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [_new_topic(settings, name) for name in _topic_names(settings) if name not in existing]
    if wanted:
        _create(admin, wanted)
        _wait_listed(settings, [t.topic for t in wanted])
    for change in fix_topic_configs(admin, settings, [n for n in _topic_names(settings) if n in existing]):
        print(f"[pushpipe] kafka: {change}", file=sys.stderr, flush=True)


def _create(admin: AdminClient, topics: list[NewTopic]) -> None:
    for name, future in admin.create_topics(topics, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise RuntimeError(f"creating topic {name} failed: {err}") from err


def _wait_listed(settings: Settings, names: list[str], timeout_s: float = 30) -> None:
    """Until each broker lists the new topics: one learns of them from the controller a moment after
    create_topics returns, and a client asking it meanwhile would find no such topic."""
    deadline = time.monotonic() + timeout_s
    for node in nodes(settings):
        admin = _admin(settings, f"{node.host}:{node.port}")
        while not set(names) <= set(admin.list_topics(timeout=10).topics):
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {node.node_id} did not list the new topics within {timeout_s:.0f} s")
            time.sleep(0.05)


# The topic configs pushpipe owns: set as topic_config says, or removed where it sets none.
MANAGED_CONFIGS = ("cleanup.policy", "retention.ms")


def fix_topic_configs(admin: AdminClient, settings: Settings, names: list[str]) -> list[str]:
    """Alter the existing topics whose managed configs differ from topic_config; returns what changed.

    An installation from before a config change (user.preferences was 7-day delete, losing opt-outs)
    is fixed in place with an incremental alter, keeping the topic's data.
    """
    if not names:
        return []
    resources = [ConfigResource("topic", name) for name in names]
    described = {res.name: future.result() for res, future in admin.describe_configs(resources).items()}
    changes, alters = [], []
    for name in names:
        entries, notes = _config_changes(topic_config(settings, name), described[name])
        if entries:
            alters.append(ConfigResource("topic", name, incremental_configs=entries))
            changes.append(f"topic {name}: {', '.join(notes)}")
    for res, future in (admin.incremental_alter_configs(alters).items() if alters else []):
        try:
            future.result()
        except KafkaException as err:
            raise RuntimeError(f"altering the config of topic {res.name} failed: {err}") from err
    return changes


def _config_changes(wanted: dict[str, str], current: dict[str, ConfigEntry]) -> tuple[list[ConfigEntry], list[str]]:
    """The incremental alter entries that bring current to wanted, and a note for each."""
    entries, notes = [], []
    for key in MANAGED_CONFIGS:
        entry = current.get(key)
        value = entry.value if entry is not None else None
        if key in wanted and value != wanted[key]:
            entries.append(ConfigEntry(key, wanted[key], incremental_operation=AlterConfigOpType.SET))
            notes.append(f"{key} {value} -> {wanted[key]}")
        elif key not in wanted and entry is not None and entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
            entries.append(ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE))
            notes.append(f"{key} {value} removed")
    return entries, notes


def topic_config(settings: Settings, name: str) -> dict[str, str]:
    """Per-topic configs: compacted device state and preferences (the latest per key is kept for
    ever), 30-day DLQ, 7 days for the rest."""
    if name in settings.topics.compacted:
        return {"cleanup.policy": "compact"}
    retention = DLQ_RETENTION_MS if name == settings.topics.dlq else RETENTION_MS
    return {"cleanup.policy": "delete", "retention.ms": str(retention)}


def _new_topic(settings: Settings, name: str) -> NewTopic:
    return NewTopic(
        name,
        num_partitions=settings.kafka_partitions,
        replication_factor=replication(settings),
        config=topic_config(settings, name),
    )


def _topic_names(settings: Settings) -> list[str]:
    return settings.topics.all()


def _admin(settings: Settings, bootstrap: str = "") -> AdminClient:
    # Short timeouts so that health checks on a stopped broker answer quickly.
    return AdminClient({
        "bootstrap.servers": bootstrap or settings.kafka_bootstrap,
        "socket.timeout.ms": 3000,
        "socket.connection.setup.timeout.ms": 3000,
        "log_level": 0,  # librdkafka would log every refused connection while the broker is down
    })


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _java_home() -> str:
    """JAVA_HOME if set, else Debian's Java 17."""
    return os.environ.get("JAVA_HOME") or JAVA_HOME_DEFAULT


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's Uuid.randomUuid makes them: never starting with "-",
    which the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
