"""Hermetic tests of result storage in the in-pod main: the start-of-run check of
spec.resultStorage (a missing or unusable store ends the run Failed naming the field), large
results referenced in the store, and a retry reusing an earlier run's task results."""

from __future__ import annotations

import pickle
from pathlib import Path

import anyio
import fsspec
import httpx
import pytest

from flowpod import contract
from flowpod.engine import _in_pod, _kubeapi, _kubereporter

from engine.kube_fakes import NAME, NS, FakeApi, Sleeps

FLOWS = '''
from pathlib import Path
from flowpod import flow, task

COUNTER = Path(__file__).with_name("counter")
FLAG = Path(__file__).with_name("fail-last")

@task(persist_result=True)
def step(x: int) -> int:
    with COUNTER.open("a") as out:
        out.write(f"{x}\\n")
    return x * 10

@task
def last(values: list) -> int:
    if FLAG.exists():
        raise RuntimeError("the last task fails while the flag file exists")
    return sum(values)

@flow
def pipeline() -> int:
    return last([step(1), step(2)])

@flow
def big() -> str:
    return "x" * 10000

@flow(persist_result=True)
def persisting() -> int:
    return 1
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "storage_flows.py"
    path.write_text(FLOWS)
    return path


def _run(api: FakeApi, entrypoint: str, storage: str | None) -> int:
    client = _kubeapi.FlowRunClient(_kubeapi.Connection.explicit("https://api.test"), NS,
                                     NAME, transport=httpx.MockTransport(api.handler),
                                     asleep=Sleeps())
    reporter = _kubereporter.KubeReporter(client)
    settings = _in_pod.PodSettings(NAME, NS, entrypoint, storage)
    return anyio.run(lambda: _in_pod.run_in_pod(settings, reporter, handle_sigterm=False))


def _adhoc(uid: str, **spec) -> FakeApi:
    api = FakeApi(spec={"entrypoint": "f.py:f", "image": "flowpod/engine:dev", **spec})
    api.obj["metadata"]["uid"] = uid
    return api


def _state(api: FakeApi) -> dict:
    return api.obj["status"]["state"]


def test_settings_read_the_storage_from_the_env() -> None:
    env = {contract.ENV_FLOW_RUN_NAME: "r", contract.ENV_FLOW_RUN_NAMESPACE: "ns",
           contract.ENV_ENTRYPOINT: "f.py:f", contract.ENV_RESULT_STORAGE: "s3://b/p"}
    assert _in_pod.PodSettings.from_env(env).result_storage == "s3://b/p"


def test_a_missing_store_fails_the_run_before_the_flow_naming_the_field(
        flows: Path, tmp_path: Path) -> None:
    api = _adhoc("u1")
    assert _run(api, f"{flows}:pipeline", f"file://{tmp_path}/not-mounted") == 0
    state = _state(api)
    assert state["type"] == "FAILED"
    assert state["message"] == (
        f"The result storage 'file://{tmp_path}/not-mounted' cannot be used: directory "
        f"{tmp_path}/not-mounted does not exist (is the volume mounted there?); fix "
        f"spec.resultStorage of FlowRun '{NAME}' (for file://, mount a writable volume at "
        f"that path through spec.podTemplate.volumes and volumeMounts)")
    assert not (tmp_path / "counter").exists()  # no task ran


def test_a_flow_that_persists_without_storage_fails_early_naming_the_field(
        flows: Path, tmp_path: Path) -> None:
    api = _adhoc("u2")
    _run(api, f"{flows}:persisting", None)
    assert _state(api)["type"] == "FAILED"
    assert _state(api)["message"].startswith(
        "Flow 'persisting' persists its results (persist_result=True), but the run has no "
        f"result storage, so they would be lost with the pod; set spec.resultStorage of "
        f"FlowRun '{NAME}' to an fsspec URL")


def test_reusing_results_without_storage_fails_naming_the_field(flows: Path) -> None:
    api = _adhoc("u3", reuseResultsFrom={"flowRunName": "old", "flowRunUid": "u0"})
    _run(api, f"{flows}:pipeline", None)
    assert _state(api)["message"] == (
        "spec.reuseResultsFrom asks for the results of FlowRun 'old', but this run has no "
        f"result storage; set spec.resultStorage of FlowRun '{NAME}' to where that run kept "
        f"them")


def test_a_large_result_goes_to_the_store_and_the_status_references_it(
        flows: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    api = _adhoc("u4")
    _run(api, f"{flows}:big", f"file://{store}")
    assert _state(api)["type"] == "COMPLETED"
    result = api.obj["status"]["result"]
    assert result == {"reference": f"file://{store}/runs/u4/flow-result.pickle"}
    with fsspec.open(result["reference"], "rb") as stored:
        assert pickle.load(stored) == "x" * 10000


def test_a_retry_reuses_the_completed_tasks_of_the_earlier_run(flows: Path,
                                                               tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "fail-last").touch()
    first = _adhoc("old-uid")
    _run(first, f"{flows}:pipeline", f"file://{store}")
    assert _state(first)["type"] == "FAILED"
    assert (tmp_path / "counter").read_text().split() == ["1", "2"]
    (tmp_path / "fail-last").unlink()
    retry = _adhoc("new-uid", reuseResultsFrom={"flowRunName": "old", "flowRunUid": "old-uid"})
    _run(retry, f"{flows}:pipeline", f"file://{store}")
    assert _state(retry)["type"] == "COMPLETED"
    assert retry.obj["status"]["result"] == {"value": 30}
    assert (tmp_path / "counter").read_text().split() == ["1", "2"]  # not run again
