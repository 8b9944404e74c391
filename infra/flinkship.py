"""What `flink run` ships with each job to the cluster, the way PyFlink documents dependency management for a real
cluster, so that the TaskManagers need nothing of this machine's venv:

- the project, built as a wheel (`pip wheel --no-deps`), shipped with `-pyfs` under a .zip name. Flink extracts a .zip
  (.jar, .tar, .tgz) python file and puts the extracted root on the workers' PYTHONPATH, but puts a .whl there as it is,
  for zipimport (flink-dist CompressionUtils), where schemas/codec.py could not read its .avsc files from the package's
  folder. A wheel's contents are a site-packages layout, so the extracted root imports like an installed package.
- the dependencies the workers import that the cluster's Python (apache-flink only, infra/flinkcluster.py) lacks,
  pinned to the versions installed here: `-pyreq requirements.txt#wheels`, with `wheels` a cache of their wheels and
  their dependencies' (`pip download`), from which each TaskManager pip-installs them offline, once per job.
  The wheels are for this machine's platform and Python; for a cluster of another, add pip's --platform/--python-version.
- the connector jars and the project's jar: pipeline.jars (jobs/runtime.py), which the client uploads with the job.
"""
from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pushpipe
from pushpipe.config import Settings

# What the jobs' Python workers import beyond apache-flink's own requirements, with the extras they use.
WORKER_DEPENDENCIES = ("confluent-kafka[schemaregistry]", "fastavro", "clickhouse-connect", "elasticsearch", "orjson",
                       "httpx[http2]", "h2", "pyjwt[crypto]", "cryptography", "sniffio", "prometheus-client", "pydantic",
                       "pydantic-settings")
REQUIREMENTS_NAME = "requirements.txt"


@dataclass(frozen=True)
class Shipment:
    project: Path  # the project's wheel, named .zip (-pyfs)
    requirements: Path  # requirements.txt (-pyreq)
    wheels: Path  # its wheel cache (-pyreq's #cache_dir)


def requirements() -> str:
    """requirements.txt: each worker dependency at the version installed here."""
    return "".join(f"{name}=={metadata.version(name.split('[')[0])}\n" for name in WORKER_DEPENDENCIES)


def wheel_cache(cache_dir: Path, text: str) -> Path:
    """requirements.txt and the wheels of everything it needs, downloaded once per set of pins."""
    home = cache_dir / "flink" / f"worker-wheels-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if not (home / ".complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        (home / "wheels").mkdir(parents=True)
        (home / REQUIREMENTS_NAME).write_text(text)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(home / "wheels"),
                        "-r", str(home / REQUIREMENTS_NAME)], check=True)
        (home / ".complete").write_text("ok\n")
    return home


def project_root() -> Path:
    root = Path(pushpipe.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        raise RuntimeError(f"the cluster mode builds the project's wheel from its checkout; none at {root}")
    return root


def build_project(target: Path) -> Path:
    """The project's wheel, copied to target under a .zip name. setuptools builds in the checkout's build/ and only
    adds to it, so it is cleared first: a module removed from the source would otherwise still be shipped."""
    shutil.rmtree(project_root() / "build", ignore_errors=True)
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, str(project_root())], check=True)
        wheel = next(Path(out).glob("pushpipe-*.whl"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, target)
    return target


def prepare(settings: Settings) -> Shipment:
    """Build what the jobs ship (once per process: `up` submits three jobs)."""
    return _prepare(settings.cache_dir, settings.run_dir)


@functools.cache
def _prepare(cache_dir: Path, run_dir: Path) -> Shipment:
    cache = wheel_cache(cache_dir, requirements())
    project = build_project(run_dir / "flink-cluster" / "ship" / "pushpipe.zip")
    return Shipment(project, cache / REQUIREMENTS_NAME, cache / "wheels")
