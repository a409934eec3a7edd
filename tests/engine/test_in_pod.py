"""Hermetic tests of the in-pod main (flowpod.engine._in_pod): a real flow, the real engine,
the real Kubernetes reporter, and a fake API server (tests/engine/kube_fakes.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import httpx
import pytest

from flowpod import contract
from flowpod.engine import _in_pod, _kubeapi, _kubereporter

from engine.kube_fakes import NAME, NS, FakeApi, Sleeps

FLOW_FILE = '''
from pathlib import Path
from flowpod import flow, task

Path(__file__).with_name("imported").write_text("yes")

@task
def square(x: int) -> int:
    return x * x

@flow(flow_run_name="squares-{n}")
def squares(n: int = 3) -> list:
    return [square(i) for i in range(n)]

@task
def explode() -> None:
    raise RuntimeError("kaboom")

@flow
def failing() -> None:
    explode()
'''


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "pod_flows.py"
    path.write_text(FLOW_FILE)
    return path


def _settings(entrypoint: str, parameters: str = "{}") -> _in_pod.PodSettings:
    return _in_pod.PodSettings(NAME, NS, entrypoint, parameters)


def _reporter(api: FakeApi, tmp_path: Path) -> _kubereporter.KubeReporter:
    client = _kubeapi.FlowRunClient(_kubeapi.Connection.explicit("https://api.test"), NS,
                                     NAME, transport=httpx.MockTransport(api.handler),
                                     asleep=Sleeps())
    return _kubereporter.KubeReporter(
        client, write_result=_in_pod._result_writer(tmp_path / "results", lambda: "uid-1"))


def _run(api: FakeApi, tmp_path: Path, settings: _in_pod.PodSettings) -> int:
    reporter = _reporter(api, tmp_path)
    return anyio.run(lambda: _in_pod.run_in_pod(settings, reporter, handle_sigterm=False))


def test_a_flow_runs_to_completed_with_result_summary_and_name(flow_file, tmp_path) -> None:
    api = FakeApi()
    api.obj["metadata"]["uid"] = "0f0e-uid"
    code = _run(api, tmp_path, _settings(f"{flow_file}:squares", '{"n": 4}'))
    assert code == 0
    status = api.obj["status"]
    assert status["state"]["type"] == "COMPLETED"
    assert [h["type"] for h in status["stateHistory"]] == ["RUNNING", "COMPLETED"]
    assert status["result"] == {"value": [0, 1, 4, 9]}
    assert status["taskRuns"]["counts"] == {"COMPLETED": 4}
    assert status["flowRunName"] == "squares-4"
    assert status["startTime"] and status["endTime"]


def test_a_raising_flow_ends_failed_and_still_exits_zero(flow_file, tmp_path) -> None:
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{flow_file}:failing")) == 0
    status = api.obj["status"]
    assert status["state"]["type"] == "FAILED"
    assert "kaboom" in status["state"]["message"]
    assert status["taskRuns"]["failed"][0]["message"].endswith("kaboom")
    assert "result" not in status


def test_bad_parameters_end_failed_naming_the_field(flow_file, tmp_path) -> None:
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares", '{"n": "many"}')) == 0
    state = api.obj["status"]["state"]
    assert state["type"] == "FAILED" and "n" in state["message"]


def test_parameters_that_are_not_a_json_object_end_failed(flow_file, tmp_path) -> None:
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares", "[1, 2]")) == 0
    assert api.obj["status"]["state"]["message"] == (
        'FLOWPOD_PARAMETERS must be a JSON object like {"x": 1}, got list')


@pytest.mark.parametrize("entrypoint, cause", [
    ("{dir}/missing.py:f", "does not exist"),
    ("{dir}/pod_flows.py:nope", "has no attribute 'nope'"),
    ("no_such_package_xyz.mod:f", "was not found"),
])
def test_an_unloadable_entrypoint_ends_failed_with_the_cause(flow_file, tmp_path, entrypoint,
                                                             cause) -> None:
    entrypoint = entrypoint.format(dir=flow_file.parent)
    api = FakeApi()
    assert _run(api, tmp_path, _settings(entrypoint)) == 0
    state = api.obj["status"]["state"]
    assert state["type"] == "FAILED"
    prefix = f"Flow could not be retrieved from entrypoint '{entrypoint}': "
    assert state["message"].startswith(prefix) and cause in state["message"]
    assert "Entrypoint '" not in state["message"][len(prefix):]  # named once, not twice


@pytest.mark.parametrize("status, spec", [
    ({"state": {"type": "CANCELLED", "name": "Cancelled", "message": "",
                "timestamp": "2025-01-01T00:00:00Z"}}, None),
    ({"state": {"type": "CANCELLING", "name": "Cancelling", "message": "",
                "timestamp": "2025-01-01T00:00:00Z"}}, None),
    ({"state": {"type": "COMPLETED", "name": "Completed", "message": "",
                "timestamp": "2025-01-01T00:00:00Z"}}, None),
    (None, {"entrypoint": "x.py:f", "image": "i", "cancel": True}),
])
def test_an_ended_or_cancelled_run_does_not_import_user_code(flow_file, tmp_path, status,
                                                             spec) -> None:
    api = FakeApi(status=status, spec=spec)
    before = json.dumps(api.obj, sort_keys=True)
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares")) == 0
    assert not (flow_file.parent / "imported").exists()
    assert api.patches() == [] and json.dumps(api.obj, sort_keys=True) == before


def test_a_large_result_is_persisted_and_referenced(tmp_path) -> None:
    big = tmp_path / "big.py"
    big.write_text("from flowpod import flow\n\n@flow\ndef big() -> str:\n"
                   f"    return 'x' * {contract.MAX_INLINE_RESULT_BYTES * 2}\n")
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{big}:big")) == 0
    reference = api.obj["status"]["result"]["reference"]
    assert reference.startswith("file://") and reference.endswith("uid-1/result.pickle")


def test_settings_come_from_the_job_env(tmp_path) -> None:
    (tmp_path / "namespace").write_text("from-sa\n")
    env = {contract.ENV_FLOW_RUN_NAME: "r", contract.ENV_ENTRYPOINT: "f.py:f"}
    settings = _in_pod.PodSettings.from_env(env, sa_dir=tmp_path)
    assert (settings.name, settings.namespace, settings.parameters()) == ("r", "from-sa", {})
    with pytest.raises(ValueError, match="FLOWPOD_FLOW_RUN_NAME, FLOWPOD_ENTRYPOINT must be set"):
        _in_pod.PodSettings.from_env({contract.ENV_FLOW_RUN_NAMESPACE: "n"}, sa_dir=tmp_path)
    with pytest.raises(ValueError, match="FLOWPOD_PARAMETERS is not valid JSON"):
        _in_pod.PodSettings("r", "n", "f.py:f", "{x").parameters()


def test_main_outside_a_cluster_exits_one_with_the_reason(capsys) -> None:
    env = {contract.ENV_FLOW_RUN_NAME: "r", contract.ENV_FLOW_RUN_NAMESPACE: "n",
           contract.ENV_ENTRYPOINT: "f.py:f"}
    assert _in_pod.main(env) == 1
    assert "KUBERNETES_SERVICE_HOST" in capsys.readouterr().err


def test_entrypoint_failure_message_keeps_foreign_causes() -> None:
    message = _in_pod.entrypoint_failure_message("a.py:f", ValueError("odd"))
    assert message == "Flow could not be retrieved from entrypoint 'a.py:f': odd"


def test_exported_names_exist() -> None:
    for name in _in_pod.__all__:
        assert hasattr(_in_pod, name), name


def test_the_run_is_named_after_its_flowrun_in_status_and_log_lines(flow_file, tmp_path,
                                                                    caplog) -> None:
    api = FakeApi()
    with caplog.at_level(logging.INFO, logger="flowpod.flow_runs"):
        _run(api, tmp_path, _settings(f"{flow_file}:failing"))
    assert api.obj["status"]["flowRunName"] == NAME
    assert f"Flow run {NAME!r} entered state Running" in caplog.text
    assert {getattr(r, "flow_run_name", None) for r in caplog.records
            if r.name == "flowpod.flow_runs"} == {NAME}
    # A flow_run_name template still names the run, in the log records' fields too.
    caplog.clear()
    api = FakeApi()
    with caplog.at_level(logging.INFO, logger="flowpod.flow_runs"):
        _run(api, tmp_path, _settings(f"{flow_file}:squares", '{"n": 2}'))
    assert api.obj["status"]["flowRunName"] == "squares-2"
    assert {getattr(r, "flow_run_name", None) for r in caplog.records
            if r.name == "flowpod.flow_runs"} == {"squares-2"}
