"""`pushpipe upgrade`'s pieces without a cluster: flink run from a savepoint, which snapshot a job resumes from, the
command in embedded mode."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pushpipe import cli
from pushpipe.config import load
from pushpipe.infra import clusterjobs, flinkship
from pushpipe.jobs import runtime


def snapshot(folder: Path, age_s: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "_metadata").write_bytes(b"x")
    then = time.time() - age_s
    os.utime(folder / "_metadata", (then, then))
    return folder


def test_flink_run_resumes_from_the_savepoint_it_is_given(tmp_path: Path) -> None:
    settings = load(home=tmp_path, flink_parallelism=3)
    shipment = flinkship.Shipment(Path("/s/pushpipe.zip"), Path("/c/requirements.txt"), Path("/c/wheels"))
    argv = clusterjobs.run_command(settings, "fanout", shipment, "file:///shared/savepoints/fanout/savepoint-ab12cd-0123")
    assert argv[1:7] == ["run", "-d", "-p", "3", "-s", "file:///shared/savepoints/fanout/savepoint-ab12cd-0123"]
    assert "--allowNonRestoredState" not in argv
    assert "-s" not in clusterjobs.run_command(settings, "fanout", shipment)


def test_a_job_resumes_from_its_savepoint_unless_a_checkpoint_is_newer(tmp_path: Path) -> None:
    checkpoint = snapshot(tmp_path / "checkpoints" / "fanout" / "0a1b" / "chk-12", age_s=60)
    saved = snapshot(tmp_path / "savepoints" / "fanout" / "savepoint-0a1b2c-77", age_s=30)
    assert runtime.latest_savepoint(tmp_path / "savepoints" / "fanout") == saved
    assert runtime.newest(runtime.latest_checkpoint(tmp_path / "checkpoints" / "fanout"), saved) == saved
    later = snapshot(tmp_path / "checkpoints" / "fanout" / "9f8e" / "chk-1", age_s=5)
    assert runtime.newest(runtime.latest_checkpoint(tmp_path / "checkpoints" / "fanout"), saved) == later
    assert runtime.newest(checkpoint, None) == checkpoint and runtime.newest(None, None) is None


def test_savepoints_go_to_a_directory_per_job_in_the_shared_dir(tmp_path: Path) -> None:
    settings = load(home=tmp_path, flink_mode="cluster")
    assert runtime.savepoint_uri(settings, "dispatch") == f"{settings.flink_shared_uri}/savepoints/dispatch"


def test_upgrade_of_an_embedded_job_says_it_is_a_cluster_mode_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHPIPE_HOME", str(tmp_path))
    monkeypatch.delenv("PUSHPIPE_FLINK_MODE", raising=False)
    result = CliRunner().invoke(cli.app, ["upgrade", "dispatch"])
    assert result.exit_code == 2 and "cluster-mode command" in result.output, result.output
    assert CliRunner().invoke(cli.app, ["upgrade", "nojob"]).exit_code == 2


def test_the_room_check_asks_a_slow_cluster_again_and_refuses_only_when_slots_are_short(tmp_path: Path,
                                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pushpipe.infra import flinkrest

    answers = iter([None, [("fan-out", 2)], [("fan-out", 2)]])  # the first call timed out on a busy JobManager
    monkeypatch.setattr(flinkrest, "vertex_parallelism", lambda base, jid: next(answers))
    monkeypatch.setattr(flinkrest, "cluster", lambda base: flinkrest.ClusterView(2, 6, 1, 3))
    monkeypatch.setattr(clusterjobs.ClusterJob, "jid", lambda self, settings: "a" * 32)
    monkeypatch.setattr(clusterjobs.time, "sleep", lambda s: None)
    settings, fanout = load(home=tmp_path), clusterjobs.ClusterJob("fanout")
    clusterjobs.check_room(settings, fanout, 3)  # 1 free + its own 2
    with pytest.raises(clusterjobs.UpgradeFailed, match="needs 4 slots: 1 free and 2 of its own"):
        clusterjobs.check_room(settings, fanout, 4)
    monkeypatch.setattr(flinkrest, "cluster", lambda base: None)
    with pytest.raises(clusterjobs.UpgradeFailed, match="did not say the cluster's slots in 0s"):
        clusterjobs.answer(lambda: flinkrest.cluster("http://x"), "the cluster's slots", timeout_s=0)
