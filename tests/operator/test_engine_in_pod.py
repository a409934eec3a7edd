"""The engine inside a real pod reports to its FlowRun through the in-cluster API.

No operator here: each test creates a FlowRun (ad-hoc form) and, by hand, a Job shaped as
the operator creates it (ARCHITECTURE.md, "One FlowRun, end to end"), with a ServiceAccount
allowed exactly what the engine needs. The pod runs `python -m flowpod.engine` on the test node (image
flowpod/engine:dev = the repository's venv, working directory = the repository root), so
the entrypoints below are repo-relative files in tests/operator/flows/.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import operator_harness
from flowpod import contract, flowruns, states

FLOWS = "tests/operator/flows"
IMAGE = operator_harness.IMAGE
ACCOUNT = operator_harness.FLOW_RUN_ACCOUNT


@pytest.fixture(scope="module")
def node_ready(cluster) -> None:
    operator_harness.apply_crds(cluster)
    ready = cluster.kubectl("get", "node", "flowpod-node", "-o",
                            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                            check=False)
    assert ready.stdout.strip() == "True", f"test node not ready: {ready.stdout}{ready.stderr}"


@pytest.fixture
def engine_namespace(cluster, namespace, node_ready) -> str:
    cluster.kubectl("apply", "-n", namespace, "-f", str(operator_harness.FLOW_RUN_RBAC))
    return namespace


def _job(flowrun: dict, entrypoint: str) -> dict:
    """The Job the operator would create for attempt 1 (ARCHITECTURE.md, "One FlowRun, end
    to end"); the engine reads the parameters from the FlowRun."""
    name = flowrun["metadata"]["name"]
    labels = {contract.LABEL_FLOW_RUN: name}
    env = [
        {"name": contract.ENV_FLOW_RUN_NAME, "value": name},
        {"name": contract.ENV_FLOW_RUN_NAMESPACE,
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": contract.ENV_ENTRYPOINT, "value": entrypoint},
        {"name": contract.ENV_ATTEMPT, "value": "1"},
    ]
    owner = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN, "name": name,
             "uid": flowrun["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    container = {"name": contract.CONTAINER_NAME, "image": IMAGE,
                 "command": list(contract.ENGINE_COMMAND),
                 "env": env,
                 "securityContext": {"allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}}}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{name}-1", "labels": labels, "ownerReferences": [owner]},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "serviceAccountName": ACCOUNT,
                     "containers": [container]}}},
    }


def _get(cluster, namespace: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "flowrun", name, "-n", namespace, "-o",
                                      "json").stdout)


def _start(cluster, namespace: str, name: str, entrypoint: str,
           parameters: dict[str, Any] | None = None, status: dict | None = None) -> str:
    """Create the FlowRun (optionally with a status) and its Job; return the Job's name."""
    manifest = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                "metadata": {"name": name},
                "spec": {"entrypoint": entrypoint, "image": IMAGE,
                         "parameters": parameters or {}}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    if status is not None:
        _patch_status(cluster, namespace, name, status)
    job = _job(_get(cluster, namespace, name), entrypoint)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(job))
    return job["metadata"]["name"]


def _patch_status(cluster, namespace: str, name: str, status: dict) -> None:
    cluster.kubectl("patch", "flowrun", name, "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))


def _diagnose(cluster, namespace: str, name: str) -> str:
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
    logs = cluster.kubectl("logs", "-n", namespace, f"job/{name}-1", check=False)
    return f"{pods}\n{logs.stdout}{logs.stderr}\n{_get(cluster, namespace, name)}"


def _wait(cluster, namespace: str, name: str, ready, what: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flowrun = _get(cluster, namespace, name)
        if ready(flowrun):
            return flowrun
        time.sleep(0.2)
    raise AssertionError(f"FlowRun {name}: {what} not seen in {timeout}s\n"
                         f"{_diagnose(cluster, namespace, name)}")


def _state_type(flowrun: dict) -> str | None:
    return ((flowrun.get("status") or {}).get("state") or {}).get("type")


def _run(cluster, namespace: str, name: str, entrypoint: str,
         parameters: dict[str, Any] | None = None, status: dict | None = None,
         timeout: float = 90) -> dict:
    """Start the run and wait for its Job's end; return the FlowRun then."""
    job = _start(cluster, namespace, name, entrypoint, parameters, status)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = json.loads(cluster.kubectl(
            "get", "job", job, "-n", namespace, "-o", "jsonpath={.status.conditions}"
        ).stdout or "[]")
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in conditions):
            return _get(cluster, namespace, name)
        time.sleep(0.2)
    raise AssertionError(f"Job {job} did not finish in {timeout}s\n"
                         f"{_diagnose(cluster, namespace, name)}")


def test_a_flow_completes_with_result_and_task_summary(cluster, engine_namespace,
                                                      tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    flowrun = _run(cluster, engine_namespace, "hello", f"{FLOWS}/hello_flow.py:hello",
                   {"n": 4, "marker": str(marker)})
    status = flowrun["status"]
    assert status["state"]["type"] == "COMPLETED", status
    assert status["result"] == {"value": {"sum": 12, "n": 4}}
    assert status["taskRuns"]["counts"] == {"COMPLETED": 4}
    assert status["taskRuns"]["failed"] == []
    assert "RUNNING" in [h["type"] for h in status["stateHistory"]]
    assert status["startTime"] <= status["endTime"]
    succeeded = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert succeeded[0]["status"] == "True"
    assert marker.read_text() == "ran"  # the pod's files are visible to the test


def test_a_raising_flow_ends_failed(cluster, engine_namespace) -> None:
    flowrun = _run(cluster, engine_namespace, "failing", f"{FLOWS}/failing_flow.py:failing")
    status = flowrun["status"]
    assert status["state"]["type"] == "FAILED", status
    assert "the flow was told to fail" in status["state"]["message"]
    assert status["taskRuns"]["counts"].get("FAILED") == 1
    assert status["taskRuns"]["failed"][0]["message"].find("the flow was told to fail") >= 0
    assert "result" not in status


def test_an_unloadable_entrypoint_ends_failed(cluster, engine_namespace) -> None:
    entrypoint = f"{FLOWS}/no_such_file.py:nothing"
    flowrun = _run(cluster, engine_namespace, "unloadable", entrypoint)
    state = flowrun["status"]["state"]
    assert state["type"] == "FAILED", state
    assert state["message"].startswith(
        f"Flow could not be retrieved from entrypoint '{entrypoint}': ")


def test_a_run_that_already_ended_does_not_run_user_code(cluster, engine_namespace,
                                                         tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cancelled = {"state": {"type": "CANCELLED", "name": "Cancelled", "message": "by a user",
                           "timestamp": "2025-01-02T03:04:05Z"}}
    flowrun = _run(cluster, engine_namespace, "too-late", f"{FLOWS}/hello_flow.py:hello",
                   {"marker": str(marker)}, status=cancelled)
    assert flowrun["status"]["state"]["type"] == "CANCELLED"
    assert flowrun["status"]["state"]["message"] == "by a user"
    assert not marker.exists()


def _sigterm_running_pod(cluster, namespace: str, name: str, cancel: bool) -> dict:
    _start(cluster, namespace, name, f"{FLOWS}/slow_flow.py:slow", {"seconds": 120})
    running = _wait(cluster, namespace, name, lambda fr: _state_type(fr) == "RUNNING",
                    "RUNNING")
    if cancel:  # what the operator does before deleting the pod
        _patch_status(cluster, namespace, name, flowruns.status_patch(
            running["status"], states.Cancelling("cancel requested"),
            generation=running["metadata"]["generation"], now=datetime.now(timezone.utc)))
    cluster.kubectl("delete", "pod", "-n", namespace, "-l", f"job-name={name}-1",
                    "--grace-period=30", "--wait=false")
    return _wait(cluster, namespace, name,
                 lambda fr: _state_type(fr) in ("CANCELLED", "CRASHED", "COMPLETED", "FAILED"),
                 "a final state", timeout=60)


def test_sigterm_while_cancelling_ends_cancelled_by_the_engine(cluster, engine_namespace) -> None:
    flowrun = _sigterm_running_pod(cluster, engine_namespace, "cancel-me", cancel=True)
    state = flowrun["status"]["state"]
    assert state["type"] == "CANCELLED", state
    assert "SIGTERM after a cancellation request" in state["message"]  # the engine wrote it
    assert [h["type"] for h in flowrun["status"]["stateHistory"]][-2:] == [
        "CANCELLING", "CANCELLED"]


def test_sigterm_without_cancellation_ends_crashed(cluster, engine_namespace) -> None:
    flowrun = _sigterm_running_pod(cluster, engine_namespace, "killed", cancel=False)
    state = flowrun["status"]["state"]
    assert state["type"] == "CRASHED", state
    assert "SIGTERM without a cancellation request" in state["message"]


def test_the_pods_log_lines_name_the_flowrun_even_with_a_template(cluster,
                                                                  engine_namespace) -> None:
    flowrun = _run(cluster, engine_namespace, "named-run", f"{FLOWS}/named_flow.py:named",
                   {"who": "pod"})
    status = flowrun["status"]
    assert status["state"]["type"] == "COMPLETED", status
    assert status["result"] == {"value": "hello pod"}  # an async flow blocked on .result()
    assert status["flowRunName"] == "greeting-pod"  # the template: a display name
    logs = cluster.kubectl("logs", "-n", engine_namespace, "job/named-run-1").stdout
    assert "Flow run 'named-run' entered state Running" in logs, logs
    assert "Flow run 'named-run' entered state Completed" in logs, logs
    assert "Flow run 'greeting-pod'" not in logs, logs
