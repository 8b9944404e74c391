"""Apache Kafka as one KRaft node (broker + controller), run from the jars on Maven Central.

install(): a generated pom resolved by `mvn dependency:copy-dependencies` into
cache_dir/kafka-<version>/libs (Maven's local repository kept in cache_dir/maven-repo).
start(): format the storage once, then `java -cp 'libs/*' kafka.Kafka server.properties`.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic

from pushpipe.config import Settings
from pushpipe.infra import process
from pushpipe.infra.service import Health

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


class Kafka:
    """Single-node Kafka in KRaft combined mode on settings.kafka_bootstrap."""

    name = "kafka"
    version = KAFKA_VERSION

    # --- paths -----------------------------------------------------------------------
    def home(self, settings: Settings) -> Path:
        return settings.cache_dir / f"kafka-{self.version}"

    def libs(self, settings: Settings) -> Path:
        return self.home(settings) / "libs"

    def data_dir(self, settings: Settings) -> Path:
        return process.service_dir(settings, self.name) / "data"

    def address(self, settings: Settings) -> str:
        return settings.kafka_bootstrap

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
        if not process.needs_start(settings, self.name, lambda: self.health(settings).ok):
            return
        self.install(settings)
        config = self._write_config(settings)
        self._format_storage(settings, config)
        process.start(settings, self.name, self._java(settings, "kafka.Kafka", str(config)))
        process.wait_until(
            lambda: self.health(settings).ok, 90, f"Kafka on {self.address(settings)}",
            settings=settings, name=self.name,
        )

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=30)

    def health(self, settings: Settings) -> Health:
        try:
            metadata = _admin(settings).list_topics(timeout=3)
        except KafkaException as err:
            return Health(False, str(err))
        return Health(True, f"{len(metadata.brokers)} broker(s), {len(metadata.topics)} topic(s)")

    # --- internals -------------------------------------------------------------------
    def _java(self, settings: Settings, main: str, *args: str) -> list[str]:
        log4j = self.home(settings) / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        return [
            str(Path(_java_home()) / "bin" / "java"),
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={process.service_dir(settings, self.name)}",
            "-cp", f"{self.libs(settings)}/*",
            main, *args,
        ]

    def _write_config(self, settings: Settings) -> Path:
        host, port = _split(settings.kafka_bootstrap)
        controller = port + CONTROLLER_OFFSET
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir(settings)),
            "num.partitions": str(settings.kafka_partitions),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        path = process.service_dir(settings, self.name) / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _format_storage(self, settings: Settings, config: Path) -> None:
        """Write meta.properties once; a formatted data dir is reused as is."""
        if (self.data_dir(settings) / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        argv = self._java(settings, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config))
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Kafka storage format failed:\n{result.stdout}\n{result.stderr}")


def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics if missing, and bring existing ones to the configs of topic_config
    (idempotent); every config changed is said on stderr."""
    admin = _admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [_new_topic(settings, name) for name in _topic_names(settings) if name not in existing]
    if wanted:
        _create(admin, wanted)
    for change in fix_topic_configs(admin, settings, [n for n in _topic_names(settings) if n in existing]):
        print(f"[pushpipe] kafka: {change}", file=sys.stderr, flush=True)


def _create(admin: AdminClient, topics: list[NewTopic]) -> None:
    for name, future in admin.create_topics(topics, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise RuntimeError(f"creating topic {name} failed: {err}") from err


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
        replication_factor=1,
        config=topic_config(settings, name),
    )


def _topic_names(settings: Settings) -> list[str]:
    return settings.topics.all()


def _admin(settings: Settings) -> AdminClient:
    # Short timeouts so that health checks on a stopped broker answer quickly.
    return AdminClient({
        "bootstrap.servers": settings.kafka_bootstrap,
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
