"""A job whose state backend changed starts afresh instead of failing to restore (jobs/runtime.py same_backend)."""
from __future__ import annotations

from collections.abc import Iterable
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


class ProcessModeMapState:
    """Like the MapState of process mode's Python workers: put_all takes (key, value) pairs."""

    __module__ = runtime.PROCESS_MODE_STATE

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}

    def put_all(self, pairs: Iterable[tuple[str, int]]) -> None:
        for key, value in pairs:
            self.entries[key] = value


class ThreadModeMapState(ProcessModeMapState):
    """Like thread mode's: put_all takes the dict (a dict iterated as pairs would fail, as in process mode)."""

    __module__ = "pyflink.fn_execution.embedded.state_impl"

    def put_all(self, pairs: Iterable[tuple[str, int]]) -> None:
        assert isinstance(pairs, dict)
        self.entries.update(pairs)


def test_put_all_gives_each_python_mode_the_form_its_map_state_takes() -> None:
    for state in (ProcessModeMapState(), ThreadModeMapState()):
        runtime.put_all(state, {"token-1": 1, "token-2": 2})
        assert state.entries == {"token-1": 1, "token-2": 2}

