"""What a FlowRun keeps, on the real plane with the operator and the engine in pods.

Parameters travel through the API (not the pod's env, which one variable caps at 128 KiB)
and are bounded at MAX_PARAMETERS_BYTES; a closed parameterSchema fails a misspelt name
before any Job; `name: null` reaches the flow; a result that does not fit the status says
it was not kept; a run that ends Cancelled or Crashed keeps its last log lines in the status,
and `flowpod logs` shows them once the pod is gone; a Crashed run's Event ends with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import operator_harness as harness
from flowpod import contract, engine
from flowpod_devcluster import waiting
from flowpod_operator.cli import _flows

REPO = Path(__file__).resolve().parents[2]
CASES = "tests/operator/flows/record_cases.py"


def _schema(function: str) -> dict:
    """The parameterSchema `flowpod deploy` writes for a flow of record_cases.py."""
    return _flows.parameter_schema(engine.load_flow_from_entrypoint(f"{REPO}/{CASES}:{function}"))


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    for function in ("measure", "greet", "strict_greet", "returns_a_set", "waits_for_cancel",
                     "last_words", "thirty_lines_then_sigkill"):
        api.create_deployment(ns, function.replace("_", "-"), entrypoint=f"{CASES}:{function}",
                              parameterSchema=_schema(function))
    big = "x" * (200 * 1024)
    api.create_flowrun(ns, "large-params", deploymentName="measure", parameters={"text": big})
    too_big = "x" * (contract.MAX_PARAMETERS_BYTES + 1)
    api.create_flowrun(ns, "too-large-params", deploymentName="measure",
                       parameters={"text": too_big})
    api.create_flowrun(ns, "misspelt", deploymentName="greet", parameters={"nmae": "x"})
    api.create_flowrun(ns, "null-name", deploymentName="greet", parameters={"name": None})
    api.create_flowrun(ns, "null-strict", deploymentName="strict-greet",
                       parameters={"name": None})
    api.create_flowrun(ns, "not-kept", deploymentName="returns-a-set")
    api.create_flowrun(ns, "cancelled", deploymentName="waits-for-cancel")
    api.create_flowrun(ns, "crashed", deploymentName="last-words")
    api.create_flowrun(ns, "killed", deploymentName="thirty-lines-then-sigkill")


@pytest.fixture
def final(api, flow_namespace, operator_proc, runs):
    def wait(name: str, timeout: float = 60) -> dict:
        return api.wait_final(flow_namespace, name, timeout=timeout,
                              explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))
    return wait


def _jobs(api, ns: str, run: str) -> list[dict]:
    return api.jobs(ns, f"{contract.LABEL_FLOW_RUN}={run}")


def test_a_200_kib_parameter_reaches_the_flow(final) -> None:
    status = final("large-params")["status"]
    assert status["state"]["type"] == "COMPLETED", status["state"]
    assert status["result"] == {"value": 200 * 1024}


def test_parameters_over_the_limit_fail_before_any_job(final, api, flow_namespace) -> None:
    state = final("too-large-params")["status"]["state"]
    assert state["type"] == "FAILED"
    assert state["message"].startswith("spec.parameters is too large: ")
    assert f"over the limit of {contract.MAX_PARAMETERS_BYTES} bytes (256 KiB)" in state["message"]
    assert _jobs(api, flow_namespace, "too-large-params") == []


def test_a_misspelt_parameter_fails_before_any_job_naming_it(final, api,
                                                            flow_namespace) -> None:
    state = final("misspelt")["status"]["state"]
    assert state["type"] == "FAILED"
    assert "unexpected parameter(s) 'nmae'" in state["message"], state
    assert _jobs(api, flow_namespace, "misspelt") == []


def test_a_null_parameter_reaches_a_flow_that_accepts_none(final) -> None:
    status = final("null-name")["status"]
    assert status["state"]["type"] == "COMPLETED", status["state"]
    assert status["result"] == {"value": "hello None"}  # not dropped for the default "world"


def test_a_null_parameter_that_kubectl_apply_drops_fails_naming_it(cluster, api,
                                                                   flow_namespace,
                                                                   final) -> None:
    manifest = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                "metadata": {"name": "null-applied"},
                "spec": {"deploymentName": "greet", "parameters": {"name": None}}}
    cluster.kubectl("apply", "-n", flow_namespace, "-f", "-", input=json.dumps(manifest))
    flowrun = final("null-applied")
    assert flowrun["spec"]["parameters"] == {}  # what kubectl made of `name: null`
    state = flowrun["status"]["state"]
    assert state["type"] == "FAILED"
    assert ("spec.parameters.name of FlowRun 'null-applied' was null, and `kubectl apply` "
            "drops null fields") in state["message"], state
    assert _jobs(api, flow_namespace, "null-applied") == []


def test_a_null_parameter_is_refused_where_the_type_does_not_allow_it(final, api,
                                                                      flow_namespace) -> None:
    state = final("null-strict")["status"]["state"]
    assert state["type"] == "FAILED"
    assert "parameter 'name': None is not of type 'string'" in state["message"], state
    assert _jobs(api, flow_namespace, "null-strict") == []


def test_a_result_that_is_not_json_is_not_kept_and_says_why(final) -> None:
    status = final("not-kept")["status"]
    assert status["state"]["type"] == "COMPLETED"
    assert status["result"] == {"notKept": (
        "The result was not kept: a set is not JSON, and the run has no result storage "
        "(spec.resultStorage). Set spec.resultStorage on the Deployment (or FlowRun) to keep "
        "it there, or return JSON data (dicts, lists, strings, numbers).")}


def _flowpod(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)


def _delete_pods(cluster, api, ns: str, run: str) -> None:
    selector = f"{contract.LABEL_FLOW_RUN}={run}"
    cluster.kubectl("delete", "pods", "-n", ns, "-l", selector, "--grace-period=0", "--force",
                    "--wait=true", check=False)
    deadline = time.monotonic() + 30
    while api.pods(ns, selector) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.pods(ns, selector) == []


def test_a_cancelled_runs_hook_output_outlives_its_pod(cluster, api, flow_namespace,
                                                       final) -> None:
    ns = flow_namespace
    api.wait_flowrun(ns, "cancelled", lambda f: harness.state_type(f) == "RUNNING",
                     what="RUNNING")
    api.cancel(ns, "cancelled")
    status = final("cancelled")["status"]
    assert status["state"]["type"] == "CANCELLED", status["state"]
    assert status["logTail"][-1] == "cleanup hook ran after Cancelled", status["logTail"]
    assert "waiting to be cancelled" in status["logTail"]
    _delete_pods(cluster, api, ns, "cancelled")
    logs = _flowpod(cluster, "logs", "cancelled", "-n", ns)
    assert logs.returncode == 0, logs.stderr
    assert "cleanup hook ran after Cancelled" in logs.stdout.splitlines()
    pod = status["podName"]
    assert (f"pod {pod} gone; showing the last {len(status['logTail'])} lines kept in the "
            f"FlowRun's status") in logs.stderr


def test_a_crash_written_by_the_operator_keeps_the_pods_last_lines(final) -> None:
    status = final("crashed")["status"]
    assert status["state"]["type"] == "CRASHED", status["state"]
    assert status["logTail"][-1] == "last words before the crash", status["logTail"]


def test_a_crash_keeps_exactly_the_last_20_lines_and_its_event_ends_with_them(
        final, api, flow_namespace) -> None:
    status = final("killed")["status"]
    assert status["state"]["type"] == "CRASHED", status["state"]
    assert status["state"]["message"].startswith("exited with code 137 (SIGKILL")
    lines = [f"numbered line {n}" for n in range(11, 31)]
    assert status["logTail"] == lines
    (event,) = waiting.wait_for(
        "the Crashed Event", lambda: [e for e in api.events(flow_namespace, "killed")
                                      if e["reason"] == "Crashed"], bool, timeout=30)
    assert event["type"] == "Warning"
    assert event["message"] == (status["state"]["message"] + "\n(last 20 lines of output)\n"
                                + "\n".join(lines))
