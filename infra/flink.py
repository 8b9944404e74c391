"""Jars that PyFlink jobs add to their classpath (pipeline.jars): connectors cached from Maven Central, and
the project's own Java (infra/java), compiled once per source version."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyflink

from pushpipe.config import Settings
from pushpipe.infra.download import fetch, maven_url

FLINK_VERSION = "2.2.1"  # must match the apache-flink package from PyPI
KAFKA_CONNECTOR_VERSION = "5.0.0-2.2"

# (group, artifact, version); the sql connector is shaded and bundles kafka-clients.
CONNECTORS: tuple[tuple[str, str, str], ...] = (
    ("org.apache.flink", "flink-sql-connector-kafka", KAFKA_CONNECTOR_VERSION),
)


def jar_dir(settings: Settings) -> Path:
    return settings.cache_dir / "flink"


def connector_jars(settings: Settings) -> list[Path]:
    """Download (once) and return the local paths of the connector jars."""
    return [
        fetch(maven_url(group, artifact, version), jar_dir(settings) / f"{artifact}-{version}.jar")
        for group, artifact, version in CONNECTORS
    ]


JAVA_SOURCES = Path(__file__).parent / "java"


def project_jar(settings: Settings) -> Path:
    """The project's Java classes (the Kafka deserializer that keeps tombstones), compiled against the
    connector and Flink jars into a jar named after the sources' digest, so a changed source is rebuilt."""
    sources = sorted(JAVA_SOURCES.rglob("*.java"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    jar = jar_dir(settings) / f"pushpipe-java-{digest}.jar"
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError("javac is needed to build infra/java: apt-get install -y openjdk-17-jdk-headless")
    flink_lib = Path(pyflink.__file__).parent / "lib"
    classpath = ":".join(str(p) for p in [*connector_jars(settings), *sorted(flink_lib.glob("flink-dist-*.jar"))])
    with tempfile.TemporaryDirectory() as classes:
        built = subprocess.run([javac, "--release", "11", "-nowarn", "-cp", classpath, "-d", classes, *map(str, sources)],
                               capture_output=True, text=True)
        if built.returncode:
            raise RuntimeError(f"javac failed on infra/java:\n{built.stderr}")
        partial = jar.with_suffix(".part")
        with zipfile.ZipFile(partial, "w") as out:
            for path in sorted(Path(classes).rglob("*.class")):
                out.write(path, path.relative_to(classes).as_posix())
        partial.rename(jar)
    return jar


def pipeline_jars(settings: Settings) -> str:
    """The connector jars and the project's jar as a `pipeline.jars` value (semicolon-separated file:// URLs)."""
    return ";".join(path.resolve().as_uri() for path in [*connector_jars(settings), project_jar(settings)])
