"""A Flink standalone session cluster on this machine (flink_mode cluster, `pushpipe up --cluster`).

One JobManager and two TaskManagers, each a process of its own, started from the Flink distribution that the
apache-flink package ships (pyflink/bin: `jobmanager.sh start-foreground`, `taskmanager.sh start-foreground`), so that
pushpipe's process control (infra/process.py) and the supervisor own each of them. Their configuration is
run/flink-cluster/conf/config.yaml (FLINK_CONF_DIR), their logs and pid files are beside it (FLINK_LOG_DIR,
FLINK_PID_DIR). Everything listens on loopback except Flink's Prometheus reporter, which has no bind-address option
and listens on every interface (flink_cluster_rest_port + 2..4: the first free port of the range for each process).

The cluster's Python is the image a real cluster would have: a venv with only apache-flink (this FLINK_VERSION,
cache/flink/python-<version>, ~50 s and ~830 MB once), named in config.yaml as python.executable. The jobs bring
their own code and dependencies with `flink run` (infra/clusterjobs.py). Checkpoints and savepoints go to
flink_shared_dir, which every process reaches.

Measured on 2 cores: JobManager REST up in ~8 s, both TaskManagers registered ~10 s later.
"""
from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pushpipe
from pushpipe.config import JOBS, Settings
from pushpipe.infra import beamloopback, flinkrest, process
from pushpipe.infra.service import Health
from pushpipe.stream_health import FLINK_METRICS

TASKMANAGERS = 2
RPC_OFFSET = 1  # JobManager RPC port = REST port + 1
METRICS_OFFSET = 2  # Prometheus reporter ports: REST port + 2 .. + 2 + TASKMANAGERS (one per process)
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TASKMANAGER_PREFIX = "flink-taskmanager-"


def cluster_dir(settings: Settings) -> Path:
    return process.service_dir(settings, "flink-cluster")


def conf_dir(settings: Settings) -> Path:
    return cluster_dir(settings) / "conf"


def rest_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.flink_cluster_rest_port}"


def metrics_ports(settings: Settings) -> range:
    first = settings.flink_cluster_rest_port + METRICS_OFFSET
    return range(first, first + 1 + TASKMANAGERS)


def slots_per_taskmanager(settings: Settings) -> int:
    """Every job at flink_parallelism fits on the TaskManagers less one (a job's operators share its slots): when one
    is lost, its jobs restart at once on the others' spare slots instead of waiting for it to come back (N+1)."""
    return math.ceil(len(JOBS) * settings.flink_parallelism / (TASKMANAGERS - 1))


def image_python(settings: Settings) -> Path:
    """The cluster's Python: a venv with apache-flink only, as a cluster's image has (built once, pinned by constraints.txt)."""
    from pushpipe.infra.flink import FLINK_VERSION

    home = settings.cache_dir / "flink" / f"python-{FLINK_VERSION}"
    python = home / "bin" / "python"
    if (home / ".complete").exists():
        return python
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    constraints = Path(pushpipe.__file__).resolve().parents[1] / "constraints.txt"
    pinned = ["-c", str(constraints)] if constraints.exists() else []
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pinned, f"apache-flink=={FLINK_VERSION}"], check=True)
    (home / ".complete").write_text("ok\n")
    return python


def site_packages(python: Path) -> Path:
    return next((python.parent.parent / "lib").glob("python3*/site-packages"))


def cluster_config(settings: Settings, python: Path) -> dict[str, Any]:
    """pushpipe's options in config.yaml, over the distribution's (flat keys, as Flink 2's YAML also takes them)."""
    shared = settings.flink_shared_uri
    first_metrics = metrics_ports(settings)
    return {
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": settings.flink_cluster_rest_port + RPC_OFFSET,
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": slots_per_taskmanager(settings),
        "taskmanager.memory.process.size": "3072m",  # twice the slots of an N-only layout, so more managed memory
        # a lost TaskManager is noticed after this many failed heartbeat calls (heartbeat.rpc-failure-threshold, 2)
        # rather than at the 50 s timeout; the timeout still covers one that hangs with its connection open
        "heartbeat.interval": 2000,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": settings.flink_cluster_rest_port,
        "parallelism.default": settings.flink_parallelism,
        "cluster.evenly-spread-out-slots": True,  # a job's subtasks over both TaskManagers, not packed into the first
        "execution.checkpointing.dir": f"{shared}/checkpoints",
        "execution.checkpointing.savepoint-dir": f"{shared}/savepoints",
        "python.executable": str(python),
        "io.tmp.dirs": str(cluster_dir(settings) / "tmp"),
        "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        "metrics.reporter.prom.port": f"{first_metrics.start}-{first_metrics.stop - 1}",
        "metrics.reporter.prom.filter.includes": list(FLINK_METRICS),
    }


def write_conf(settings: Settings) -> Path:
    """FLINK_CONF_DIR: config.yaml, and the distribution's log4j settings for processes in the foreground."""
    import yaml

    conf = conf_dir(settings)
    conf.mkdir(parents=True, exist_ok=True)
    (cluster_dir(settings) / "tmp").mkdir(exist_ok=True)
    shipped = beamloopback.pyflink_home() / "conf"
    options = flatten(yaml.safe_load((shipped / "config.yaml").read_text())) | cluster_config(settings, image_python(settings))
    (conf / "config.yaml").write_text(yaml.safe_dump(options, sort_keys=False, width=10_000))
    shutil.copy(shipped / "log4j-console.properties", conf)
    shutil.copy(shipped / "log4j-cli.properties", conf)  # `flink run`'s
    return conf


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the distribution's options (env.java.opts.all's --add-opens among them) as flat keys."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lib_dir(settings: Settings) -> Path:
    """The cluster's FLINK_LIB_DIR: pyflink/lib, flink-python (pyflink keeps it in opt/, and a cluster running Python jobs
    needs it in lib), and Beam's gRPC servers bound to loopback (infra/beamloopback.py). Prometheus's reporter comes
    from plugins/, as on any cluster. Built once per pyflink installation."""
    home = beamloopback.pyflink_home()
    python_jar = next((home / "opt").glob("flink-python*.jar"))
    target = settings.cache_dir / "flink" / f"cluster-lib-{hashlib.sha1(str(python_jar.resolve()).encode()).hexdigest()[:12]}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for jar in [*(home / "lib").glob("*.jar"), python_jar, beamloopback.lib_dir(settings) / "beam-grpc-loopback.jar"]:
        link = target / jar.name
        link.unlink(missing_ok=True)
        link.symlink_to(jar)
    (target / ".complete").write_text("ok\n")
    return target


def flink_env(settings: Settings) -> dict[str, str]:
    """The environment of the cluster's processes (and of `flink run`, which reads the same config.yaml).

    FLINK_LIB_DIR: see lib_dir.
    PYTHONPATH: the image Python's site-packages, where thread-mode operators (Python embedded in the TaskManager by pemja,
    which does not start the venv's interpreter) import pemja and pyflink from: "No module named 'pemja'" without it.
    PUSHPIPE_SCHEMA_REGISTRY_URL, PUSHPIPE_STAGE_METRICS: the Python workers read these variables (schemas/registry.py,
    jobs/counting.py), which they inherit from their TaskManager, as a cluster's image sets them.
    """
    return {"FLINK_HOME": str(beamloopback.pyflink_home()), "FLINK_CONF_DIR": str(conf_dir(settings)),
            "FLINK_LOG_DIR": str(cluster_dir(settings) / "log"), "FLINK_PID_DIR": str(cluster_dir(settings) / "pid"),
            "FLINK_LIB_DIR": str(lib_dir(settings)), "PYTHONPATH": str(site_packages(image_python(settings))),
            "PUSHPIPE_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
            "PUSHPIPE_STAGE_METRICS": str(settings.stage_metrics).lower()}


def flink_bin(script: str) -> str:
    return str(beamloopback.pyflink_home() / "bin" / script)


def _version() -> str:
    from pushpipe.infra.flink import FLINK_VERSION

    return f"Flink {FLINK_VERSION}"


@dataclass(frozen=True)
class JobManager:
    """The cluster's JobManager: its REST API and web UI are the cluster's address."""

    name: str = "flink-jobmanager"

    @property
    def version(self) -> str:
        return _version()

    def address(self, settings: Settings) -> str:
        return rest_url(settings)

    def install(self, settings: Settings) -> None:
        write_conf(settings)

    def start(self, settings: Settings) -> None:
        if not process.is_running(settings, self.name):
            process.start(settings, self.name, [flink_bin("jobmanager.sh"), "start-foreground"], env=flink_env(settings))
        process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, "Flink JobManager", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=STOP_TIMEOUT_S)

    def health(self, settings: Settings) -> Health:
        if not process.is_running(settings, self.name):
            return Health(False, "not running")
        overview = flinkrest.cluster(rest_url(settings))
        if overview is None:
            return Health(False, "starting")
        return Health(True, f"{overview.taskmanagers} TaskManagers, {overview.slots_free}/{overview.slots_total} slots free, "
                            f"{overview.jobs_running} jobs running")


@dataclass(frozen=True)
class TaskManager:
    """One TaskManager, registered at the JobManager under its name (taskmanager.resource-id)."""

    number: int

    @property
    def name(self) -> str:
        return f"{TASKMANAGER_PREFIX}{self.number}"

    @property
    def version(self) -> str:
        return _version()

    def address(self, settings: Settings) -> str:
        return f"{rest_url(settings)}/taskmanagers/{self.name}"

    def install(self, settings: Settings) -> None:
        """The JobManager writes the configuration they share."""

    def start(self, settings: Settings) -> None:
        self.launch(settings)
        self.wait_ready(settings)

    def launch(self, settings: Settings) -> None:
        """Start the process unless it runs; returns at once (both TaskManagers start side by side)."""
        if not process.is_running(settings, self.name):
            argv = [flink_bin("taskmanager.sh"), "start-foreground", "-D", f"taskmanager.resource-id={self.name}"]
            process.start(settings, self.name, argv, env=flink_env(settings))

    def wait_ready(self, settings: Settings) -> None:
        process.wait_until(lambda: self.health(settings).ok, START_TIMEOUT_S, f"Flink {self.name}", settings=settings, name=self.name)

    def stop(self, settings: Settings) -> None:
        process.stop(settings, self.name, timeout=STOP_TIMEOUT_S)

    def health(self, settings: Settings) -> Health:
        if not process.is_running(settings, self.name):
            return Health(False, "not running")
        registered = {tm.id: tm for tm in flinkrest.taskmanagers(rest_url(settings)) or []}
        tm = registered.get(self.name)
        if tm is None:
            return Health(False, "not registered at the JobManager")
        return Health(True, f"registered, {tm.slots_free}/{tm.slots_total} slots free")


def taskmanagers() -> list[TaskManager]:
    return [TaskManager(n) for n in range(1, TASKMANAGERS + 1)]


def processes() -> list[JobManager | TaskManager]:
    """The cluster's processes in start order."""
    return [JobManager(), *taskmanagers()]


def start(settings: Settings) -> None:
    """The JobManager, then both TaskManagers side by side; returns once both are registered."""
    JobManager().start(settings)
    for tm in taskmanagers():
        tm.launch(settings)
    for tm in taskmanagers():
        tm.wait_ready(settings)


def started(settings: Settings) -> bool:
    """Whether pushpipe runs the cluster (its JobManager has a pid file)."""
    return process.read_pid(settings, JobManager().name) is not None
