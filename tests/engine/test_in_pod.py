"""Hermetic tests of the in-pod main (flowpod.engine._in_pod): a real flow, the real engine,
the real Kubernetes reporter, and a fake API server (tests/engine/kube_fakes.py)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowpod import contract
from flowpod.engine import _in_pod, _kubeapi, _kubereporter, _logtail

from engine.kube_fakes import NAME, NS, FakeApi, Sleeps

FLOW_FILE = '''
from pathlib import Path
from typing import Any
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


def _settings(entrypoint: str) -> _in_pod.PodSettings:
    return _in_pod.PodSettings(NAME, NS, entrypoint)


def _api(parameters: Any = None, **spec: Any) -> FakeApi:
    """The fake API server holding the FlowRun (ad hoc unless deploymentName is given)."""
    if "deploymentName" not in spec:
        spec.update(entrypoint="f.py:f", image="flowpod/engine:dev")
    if parameters is not None:
        spec["parameters"] = parameters
    return FakeApi(spec=spec)


def _reporter(api: FakeApi, tmp_path: Path, tail=None) -> _kubereporter.KubeReporter:
    client = _kubeapi.FlowRunClient(_kubeapi.Connection.explicit("https://api.test"), NS,
                                     NAME, transport=httpx.MockTransport(api.handler),
                                     asleep=Sleeps())
    return _kubereporter.KubeReporter(client, log_tail=tail)


def _run(api: FakeApi, tmp_path: Path, settings: _in_pod.PodSettings, tail=None) -> int:
    reporter = _reporter(api, tmp_path, tail)
    return anyio.run(lambda: _in_pod.run_in_pod(settings, reporter, handle_sigterm=False))


def test_a_flow_runs_to_completed_with_result_summary_and_name(flow_file, tmp_path) -> None:
    api = _api({"n": 4})
    api.obj["metadata"]["uid"] = "0f0e-uid"
    code = _run(api, tmp_path, _settings(f"{flow_file}:squares"))
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
    api = _api({"n": "many"})
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares")) == 0
    state = api.obj["status"]["state"]
    assert state["type"] == "FAILED" and "n" in state["message"]


def test_parameters_that_are_not_a_json_object_end_failed(flow_file, tmp_path) -> None:
    api = _api([1, 2])
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares")) == 0
    assert api.obj["status"]["state"]["message"] == (
        'spec.parameters must be a JSON object like {"x": 1}, got list')


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


def test_a_large_result_is_not_kept_and_the_status_says_why(tmp_path) -> None:
    big = tmp_path / "big.py"
    big.write_text("from flowpod import flow\n\n@flow\ndef big() -> str:\n"
                   f"    return 'x' * {contract.MAX_INLINE_RESULT_BYTES * 2}\n")
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{big}:big")) == 0
    result = api.obj["status"]["result"]
    assert list(result) == ["notKept"]  # no reference to a file that dies with the pod
    assert result["notKept"].startswith("The result was not kept: it is 8 KiB as JSON, over "
                                        "the 4 KiB that fit in the FlowRun's status")
    assert not list(tmp_path.rglob("*.pickle"))


def _deployment(name: str = "etl", **parameters: Any) -> dict[str, Any]:
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"entrypoint": "f.py:f", "image": "flowpod/engine:dev",
                     "parameters": parameters}}


def test_parameters_are_read_from_the_flowrun_over_its_deployments_defaults(
        flow_file, tmp_path) -> None:
    api = _api({"n": 2}, deploymentName="etl")
    api.add(_deployment(n=5, unused=True))
    settings = _settings(f"{flow_file}:squares")
    reporter = _reporter(api, tmp_path)
    flowrun = anyio.run(reporter.refresh)
    parameters = anyio.run(_in_pod.read_parameters, reporter.client, flowrun)
    assert parameters == {"n": 2, "unused": True}
    api.obj["spec"]["parameters"] = {}
    assert _run(api, tmp_path, settings) == 0
    state = api.obj["status"]["state"]  # `unused` is no parameter of the flow
    assert state["type"] == "FAILED" and "'unused'" in state["message"], state


def test_a_large_parameter_travels_through_the_api(flow_file, tmp_path) -> None:
    text = "y" * (200 * 1024)  # more than one environment variable may hold (128 KiB)
    flow = tmp_path / "echo.py"
    flow.write_text("from flowpod import flow\n\n@flow\ndef echo(text: str) -> int:\n"
                    "    return len(text)\n")
    api = _api({"text": text})
    assert _run(api, tmp_path, _settings(f"{flow}:echo")) == 0
    assert api.obj["status"]["result"] == {"value": len(text)}


@pytest.mark.parametrize("answer, message", [
    (404, "Deployment 'etl' not found in namespace 'team'; create it, or fix "
          "spec.deploymentName"),
    (403, "Could not read the default parameters of Deployment 'etl': Deployment team/etl: "
          "access denied (forbidden); the pod's ServiceAccount needs get/watch/patch/create on "
          "flowruns, patch on flowruns/status and get on deployments.flowpod.io in this "
          "namespace (examples/flow-run-rbac.yaml)"),
])
def test_an_unreadable_deployment_ends_failed_saying_why(flow_file, tmp_path, answer,
                                                         message) -> None:
    api = _api(deploymentName="etl")
    def deny(request: httpx.Request) -> httpx.Response | None:
        return (httpx.Response(answer, json={"message": "forbidden"})
                if "/deployments/" in request.url.path else None)

    api.failures.extend([deny, deny])  # the FlowRun's GET passes, the Deployment's does not
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares")) == 0
    state = api.obj["status"]["state"]
    assert (state["type"], state["message"]) == ("FAILED", message)


def test_a_failed_run_keeps_its_last_output_lines_in_the_status(flow_file, tmp_path) -> None:
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{flow_file}:failing"),
                tail=lambda: ["first", "x" * 2000, "kaboom"]) == 0
    tail = api.obj["status"]["logTail"]
    assert tail[0] == "first" and tail[-1] == "kaboom"
    assert len(tail[1]) == contract.MAX_LOG_LINE_LENGTH and tail[1].endswith("(truncated)")
    assert api.obj["status"]["state"]["type"] == "FAILED"
    # Written with the final state, in the same patch: the record is whole once final.
    final_patch = api.patches()[-1]["status"]
    assert final_patch["state"]["type"] == "FAILED" and "logTail" in final_patch


def test_what_a_failure_hook_prints_is_kept_with_the_final_state(tmp_path) -> None:
    hooked = tmp_path / "hooked.py"
    hooked.write_text(
        "from flowpod import flow, get_run_logger, states\n\n"
        "def cleanup(flow_obj, run, state):\n"
        "    print(f'cleanup after {state.name}', flush=True)\n\n"
        "@flow(on_failure=[cleanup])\n"
        "def doomed() -> states.State:\n"
        "    get_run_logger().warning('about to fail')\n"
        # A returned Failed state, not a raise: a traceback would fill the MAX_LOG_TAIL_LINES
        # kept between the two lines this test looks for.
        "    return states.Failed('doomed')\n")
    api = FakeApi()
    with _logtail.LogTail().installed() as tail:
        console = logging.StreamHandler()  # made under the tee, as the pod's console handler
        logging.getLogger("flowpod").addHandler(console)
        try:
            assert _run(api, tmp_path, _settings(f"{hooked}:doomed"), tail=tail.lines) == 0
        finally:
            logging.getLogger("flowpod").removeHandler(console)
    status = api.obj["status"]
    assert status["state"]["type"] == "FAILED"
    assert status["logTail"][-1] == "cleanup after Failed"
    assert any(line.endswith("about to fail") for line in status["logTail"])


def test_the_log_tail_tee_writes_through_and_keeps_the_newest_lines(capsys) -> None:
    tail = _logtail.LogTail(max_lines=3)
    streams = sys.stdout, sys.stderr
    with tail.installed():
        print("one\ntwo")
        print("three", file=sys.stderr)
        print("four", end="")
    assert tail.lines() == ["two", "three", "four"]
    assert capsys.readouterr() == ("one\ntwo\nfour", "three\n")
    assert (sys.stdout, sys.stderr) == streams  # restored


def test_a_completed_run_keeps_no_log_tail(flow_file, tmp_path) -> None:
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{flow_file}:squares"), tail=lambda: ["line"]) == 0
    assert api.obj["status"]["state"]["type"] == "COMPLETED"
    assert "logTail" not in api.obj["status"]


def test_settings_come_from_the_job_env(tmp_path) -> None:
    (tmp_path / "namespace").write_text("from-sa\n")
    env = {contract.ENV_FLOW_RUN_NAME: "r", contract.ENV_ENTRYPOINT: "f.py:f"}
    settings = _in_pod.PodSettings.from_env(env, sa_dir=tmp_path)
    assert (settings.name, settings.namespace, settings.entrypoint) == ("r", "from-sa", "f.py:f")
    with pytest.raises(ValueError, match="FLOWPOD_FLOW_RUN_NAME, FLOWPOD_ENTRYPOINT must be set"):
        _in_pod.PodSettings.from_env({contract.ENV_FLOW_RUN_NAMESPACE: "n"}, sa_dir=tmp_path)


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
    # With a flow_run_name template the log lines still carry the FlowRun's name; the
    # rendered template is the run's display name in status.flowRunName.
    caplog.clear()
    api = _api({"n": 2})
    with caplog.at_level(logging.INFO, logger="flowpod"):
        _run(api, tmp_path, _settings(f"{flow_file}:squares"))
    assert api.obj["status"]["flowRunName"] == "squares-2"
    assert f"Flow run {NAME!r} entered state Completed" in caplog.text
    assert {getattr(r, "flow_run_name", None) for r in caplog.records
            if r.name == "flowpod.flow_runs"} == {NAME}
    assert f"flow run {NAME}: its flow_run_name template renders 'squares-2'" in caplog.text


def test_a_template_that_cannot_be_rendered_fails_the_run_in_a_pod(tmp_path) -> None:
    path = tmp_path / "bad_name.py"
    path.write_text("from flowpod import flow\n\n"
                    "@flow(flow_run_name='run-{missing}')\n"
                    "def bad() -> int:\n    return 1\n")
    api = FakeApi()
    assert _run(api, tmp_path, _settings(f"{path}:bad")) == 0
    state = api.obj["status"]["state"]
    assert state["type"] == "FAILED"
    assert "flow_run_name 'run-{missing}'" in state["message"] and "missing" in state["message"]
