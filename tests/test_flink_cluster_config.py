"""The cluster's pure pieces: its config.yaml options, the `flink run` command line, what is shipped (no service)."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from pushpipe.config import load
from pushpipe.infra import clusterjobs, flinkcluster, flinkship, prometheus


def test_cluster_config_is_on_loopback_with_ports_from_the_rest_port_and_the_shared_dir(tmp_path: Path) -> None:
    settings = load(home=tmp_path, flink_cluster_rest_port=28084, flink_parallelism=2, flink_shared_dir="s3://bucket/pp/")
    options = flinkcluster.cluster_config(settings, Path("/image/bin/python"))
    assert options["rest.port"] == 28084 and options["jobmanager.rpc.port"] == 28085
    assert options["metrics.reporter.prom.port"] == "28086-28088", "one reporter port for each of the three processes"
    assert options["metrics.reporter.prom.factory.class"] == "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    assert all(options[k] == "127.0.0.1" for k in ("rest.bind-address", "jobmanager.bind-host", "taskmanager.bind-host"))
    assert options["execution.checkpointing.dir"] == "s3://bucket/pp/checkpoints"
    assert options["execution.checkpointing.savepoint-dir"] == "s3://bucket/pp/savepoints"
    assert options["taskmanager.numberOfTaskSlots"] == 6, "three jobs at parallelism 2 on either TaskManager alone (N+1)"
    assert options["heartbeat.interval"] == 2000, "a killed TaskManager noticed in seconds"
    assert options["python.executable"] == "/image/bin/python"



def test_prometheus_scrapes_the_clusters_reporters_in_cluster_mode_only(tmp_path: Path) -> None:
    def scraped(mode: str) -> dict[str, list[str]]:
        config = prometheus.scrape_config(load(home=tmp_path, flink_mode=mode, flink_cluster_rest_port=28084))
        return {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}

    assert scraped("cluster")["flink-cluster"] == ["127.0.0.1:28086", "127.0.0.1:28087", "127.0.0.1:28088"]
    assert "flink-cluster" not in scraped("embedded") and "flink" in scraped("embedded")  # the Pushgateway's

def test_the_shared_dir_defaults_to_the_run_dir_and_takes_paths(tmp_path: Path) -> None:
    assert load(home=tmp_path).flink_shared_uri == (tmp_path / "run" / "flink-shared").as_uri()
    assert load(home=tmp_path, flink_shared_dir=str(tmp_path / "nfs")).flink_shared_uri == (tmp_path / "nfs").as_uri()


def test_parallelism_is_the_clusters_in_cluster_mode(tmp_path: Path) -> None:
    embedded = load(home=tmp_path, dispatch_parallelism=3)
    assert (embedded.parallelism("fanout"), embedded.parallelism("dispatch")) == (1, 3)
    on_cluster = load(home=tmp_path, flink_mode="cluster", flink_parallelism=4)
    assert {on_cluster.parallelism(job) for job in ("fanout", "dispatch", "analytics")} == {4}


def test_flatten_turns_the_distributions_nested_yaml_into_flat_keys() -> None:
    assert flinkcluster.flatten({"env": {"java": {"opts": {"all": "--add-opens=x"}}}, "a": 1}) == {"env.java.opts.all": "--add-opens=x", "a": 1}


def test_flink_run_ships_the_project_and_its_wheels_and_runs_the_jobs_module(tmp_path: Path) -> None:
    settings = load(home=tmp_path, flink_parallelism=2)
    shipment = flinkship.Shipment(Path("/s/pushpipe.zip"), Path("/c/requirements.txt"), Path("/c/wheels"))
    argv = clusterjobs.run_command(settings, "dispatch", shipment)
    assert argv[0].endswith("/pyflink/bin/flink") and argv[1:5] == ["run", "-d", "-p", "2"]
    joined = " ".join(argv)
    assert "-pym pushpipe.jobs.dispatch" in joined and "-pyfs /s/pushpipe.zip" in joined
    assert "-pyreq /c/requirements.txt#/c/wheels" in joined


def test_the_job_id_is_read_from_flink_runs_output() -> None:
    assert clusterjobs.submitted_id("...\nJob has been submitted with JobID 0123456789abcdef0123456789abcdef\n") == "0123456789abcdef0123456789abcdef"
    with pytest.raises(clusterjobs.SubmitFailed):
        clusterjobs.submitted_id("org.apache.flink.client.program.ProgramInvocationException: boom")


def test_worker_dependencies_are_the_projects_own_pinned_as_installed() -> None:
    declared = {re.split(r"[\[=<>; ]", r)[0].lower() for r in metadata.requires("pushpipe") or [] if "extra ==" not in r}
    shipped = [line.split("==") for line in flinkship.requirements().splitlines()]
    assert {name.split("[")[0].lower() for name, _ in shipped} <= declared
    assert all(version == metadata.version(name.split("[")[0]) for name, version in shipped)
    assert "apache-flink" not in {name for name, _ in shipped}, "the cluster's Python has it"
