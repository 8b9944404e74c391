"""A job whose state backend changed starts afresh instead of failing to restore (jobs/runtime.py same_backend)."""
from __future__ import annotations

from pathlib import Path

from pushpipe.jobs import runtime


def test_checkpoints_of_another_backend_are_set_aside_and_the_same_backend_resumes(tmp_path: Path) -> None:
    checkpoints = tmp_path / "analytics"
    (checkpoints / "abc" / "chk-7").mkdir(parents=True)
    (checkpoints / "abc" / "chk-7" / "_metadata").write_bytes(b"x")
    assert runtime.same_backend(checkpoints, "hashmap"), "none noted, no shared files: the heap backend's"
    assert runtime.latest_checkpoint(checkpoints) is not None
    assert not runtime.same_backend(checkpoints, "rocksdb")
    assert runtime.latest_checkpoint(checkpoints) is None, "nothing to restore from"
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("analytics-hashmap-")]
    assert (aside / "abc" / "chk-7" / "_metadata").exists(), "the old checkpoints are kept"
    assert runtime.same_backend(checkpoints, "rocksdb") and (checkpoints / "state-backend").read_text() == "rocksdb"


def test_unnoted_checkpoints_with_shared_files_are_rocksdbs_and_resume(tmp_path: Path) -> None:
    checkpoints = tmp_path / "fanout"
    (checkpoints / "abc" / "chk-3").mkdir(parents=True)
    (checkpoints / "abc" / "chk-3" / "_metadata").write_bytes(b"x")
    (checkpoints / "abc" / "shared").mkdir()
    (checkpoints / "abc" / "shared" / "sst-1").write_bytes(b"x")
    assert runtime.same_backend(checkpoints, "rocksdb") and runtime.latest_checkpoint(checkpoints) is not None


def test_unnoted_heap_checkpoints_are_not_restored_into_rocksdb(tmp_path: Path) -> None:
    checkpoints = tmp_path / "analytics"
    (checkpoints / "abc" / "chk-3").mkdir(parents=True)
    (checkpoints / "abc" / "chk-3" / "_metadata").write_bytes(b"x")
    assert not runtime.same_backend(checkpoints, "rocksdb")
