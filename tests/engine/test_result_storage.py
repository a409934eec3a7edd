"""Result storage on fsspec: URL roots, atomic local writes, the start-of-run probe,
deterministic task-run keys, and reusing an earlier run's results (retry from failure)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import uuid
from pathlib import Path

import fsspec
import pytest

from flowpod import flow, task
from flowpod.results import ResultStorageError, ResultStore


@pytest.fixture
def memory_root():
    """A fresh root on fsspec's in-memory filesystem (an object store: no renames)."""
    root = f"memory://flowpod-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_file_url_root_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ResultStore(f"file://{tmp_path}")
    path = store.path_for("runs", "run 1", "task/key-0")
    store.write(path, {"value": [1, 2]})
    assert store.read(path) == (True, {"value": [1, 2]})
    assert store.read(store.path_for("runs", "run 1", "other")) == (False, None)
    # Unsafe characters of free-text keys never make extra directories.
    assert sorted(os.listdir(tmp_path / "runs" / "run_1")) == ["task_key-0"]
    assert store.url_for(path) == f"file://{tmp_path}/runs/run_1/task_key-0"


def test_plain_path_root_is_local_storage(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    store.write(store.path_for("a"), 1)
    assert (tmp_path / "results" / "a").is_file()
    assert ResultStore(f"file://{tmp_path}/results").read(store.path_for("a")) == (True, 1)


def test_object_store_root_writes_whole_objects(memory_root: str) -> None:
    store = ResultStore(memory_root)
    path = store.path_for("runs", "r", "k")
    store.write(path, "value")
    assert store.read(path) == (True, "value")
    with fsspec.open(store.url_for(path), "rb") as stored:  # the URL finds the value
        assert pickle.load(stored) == "value"
    assert fsspec.filesystem("memory").ls(f"{memory_root}/runs/r", detail=False) == [
        f"/{memory_root.removeprefix('memory://')}/runs/r/k"]  # no temp object left


def test_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(ResultStorageError, match=r"result storage 'nosuch://b/p' cannot be "
                                                 r"opened: .*nosuch"):
        ResultStore("nosuch://b/p").check_usable()


def test_probe_refuses_a_missing_local_directory(tmp_path: Path) -> None:
    store = ResultStore(f"file://{tmp_path}/not-mounted")
    with pytest.raises(ResultStorageError, match="not-mounted does not exist"):
        store.check_usable()
    assert not (tmp_path / "not-mounted").exists()  # not created inside the pod


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_probe_refuses_an_unwritable_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ResultStorageError, match="cannot write to .*PermissionError"):
            ResultStore(f"file://{tmp_path}").check_usable()
    finally:
        tmp_path.chmod(0o755)


def test_probe_reports_a_store_that_refuses_writes(memory_root: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Root may write anywhere locally, so the refusal comes from the backend itself here.
    def refuse(self, path, value, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(type(fsspec.filesystem("memory")), "pipe_file", refuse)
    with pytest.raises(ResultStorageError, match=rf"cannot write to {memory_root}: "
                                                 r"PermissionError: .*Permission denied"):
        ResultStore(memory_root).check_usable()


def test_probe_accepts_a_writable_root_and_cleans_up(tmp_path: Path, memory_root) -> None:
    ResultStore(f"file://{tmp_path}").check_usable()
    assert os.listdir(tmp_path) == []
    ResultStore(memory_root).check_usable()


def _keys(root: Path, run_id: str) -> list[str]:
    return sorted(os.listdir(root / "runs" / run_id))


def _fan_out_flow(calls: list[int]):
    @task(persist_result=True)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @task(persist_result=True, task_run_name="total-{values}")
    def total(values: list[int]) -> int:
        return sum(values)

    @flow
    def pipeline(n: int) -> int:
        futures = double.map(range(n))
        first = [double(x) for x in range(2)]
        return total([*futures.result(), *first])

    return pipeline


def test_task_run_keys_are_the_same_in_every_run_of_the_same_code(run, deps) -> None:
    pipeline = _fan_out_flow([])
    assert run(pipeline, {"n": 5}, flow_run_id="first", deps=deps).result() == 22
    assert run(pipeline, {"n": 5}, flow_run_id="second", deps=deps).result() == 22
    keys = _keys(Path(deps.result_dir), "first")
    assert len(keys) == 8  # 5 mapped + 2 direct calls + total
    assert keys == _keys(Path(deps.result_dir), "second")


def test_reuse_results_from_an_earlier_run_skips_its_completed_tasks(run, deps) -> None:
    calls: list[int] = []
    armed = {"fail": True}

    @task(persist_result=True)
    def step(x: int) -> int:
        calls.append(x)
        return x * 10

    @task
    def last(values: list[int]) -> int:
        if armed["fail"]:
            raise RuntimeError("the last task fails")
        return sum(values)

    @flow
    def pipeline() -> int:
        return last([step(1), step(2)])

    assert run(pipeline, flow_run_id="old", deps=deps).is_failed()
    assert calls == [1, 2]
    armed["fail"] = False
    retry = dataclasses.replace(deps, reuse_results_from="old")
    state = run(pipeline, flow_run_id="retry-1", deps=retry)
    assert state.result() == 30 and calls == [1, 2]  # both steps came from "old"
    # Copied under the retry's own id, so a retry of the retry reuses them as well.
    again = dataclasses.replace(deps, reuse_results_from="retry-1")
    assert run(pipeline, flow_run_id="retry-2", deps=again).result() == 30
    assert calls == [1, 2]
    # Without a source, a new run id reruns everything.
    assert run(pipeline, flow_run_id="fresh", deps=deps).result() == 30
    assert calls == [1, 2, 1, 2]


def test_engine_default_storage_follows_the_result_storage_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowpod import contract
    from flowpod._runtime.deps import default_result_dir

    monkeypatch.setenv(contract.ENV_RESULT_STORAGE, f"file://{tmp_path}/store")
    assert default_result_dir() == f"file://{tmp_path}/store"
    monkeypatch.delenv(contract.ENV_RESULT_STORAGE)
    assert default_result_dir() == Path(os.environ[contract.ENV_RESULT_DIR])
