"""Jars that PyFlink jobs add to their classpath (pipeline.jars), cached from Maven Central."""
from __future__ import annotations

from pathlib import Path

from infra.download import fetch, maven_url
from pushpipe.config import Settings

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


def pipeline_jars(settings: Settings) -> str:
    """The connector jars as a `pipeline.jars` value (semicolon-separated file:// URLs)."""
    return ";".join(path.resolve().as_uri() for path in connector_jars(settings))
