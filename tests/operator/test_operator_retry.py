"""Results that outlive a pod, and `flowpod retry`, on the real plane with the operator and
the engine in pods.

The Deployment's spec.resultStorage is a file:// URL on a hostPath volume (a PVC in a real
cluster; the test node makes mount points on the host, so it is mounted under the test's
temporary directory rather than at /mnt/results): a flow's tasks count their runs in a file
there and its last task fails while a flag file exists. `flowpod retry --from-failure` then
skips the completed tasks (the counter stays), and plain `flowpod retry` reruns them all.
A large result is written there and referenced from the status; a store that is not
mounted, or a protocol fsspec does not know, fails the run naming spec.resultStorage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import operator_harness as harness
from flowpod import contract

REPO = Path(__file__).resolve().parents[2]
FLOWS = "tests/operator/flows/retry_flow.py"


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("retry")


@pytest.fixture(scope="module")
def volume(place: Path) -> Path:
    """The host directory behind the result volume (what a PVC would provide)."""
    (place / "volume").mkdir()
    return place / "volume"


@pytest.fixture(scope="module")
def mount(place: Path) -> str:
    """Where the flow container sees the volume."""
    return str(place / "mnt-results")


def _template(host: Path, mount: str) -> dict:
    return {"volumes": [{"name": "results", "hostPath": {"path": str(host),
                                                         "type": "Directory"}}],
            "volumeMounts": [{"name": "results", "mountPath": mount}],
            "env": [{"name": "RESULTS_MOUNT", "value": mount}]}


@pytest.fixture(scope="module")
def deployments(api, flow_namespace, operator_proc, volume, mount) -> str:
    ns = flow_namespace
    template = _template(volume, mount)
    api.create_deployment(ns, "counted", entrypoint=f"{FLOWS}:pipeline",
                          resultStorage=f"file://{mount}", podTemplate=template)
    api.create_deployment(ns, "large", entrypoint=f"{FLOWS}:large",
                          resultStorage=f"file://{mount}", podTemplate=template)
    api.create_deployment(ns, "unmounted", entrypoint=f"{FLOWS}:pipeline",
                          resultStorage=f"file://{mount}-unmounted",
                          podTemplate={"env": template["env"]})
    api.create_deployment(ns, "unknown", entrypoint=f"{FLOWS}:pipeline",
                          resultStorage="nosuch://bucket/prefix")
    api.create_deployment(ns, "no-storage", entrypoint=f"{FLOWS}:large")
    return ns


def _final(api, operator_proc, ns: str, name: str) -> dict:
    return api.wait_final(ns, name, timeout=90,
                          explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))


def _flowpod(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


def _counter(volume: Path) -> list[str]:
    return (volume / "counter").read_text().split()


def test_retry_from_failure_skips_completed_tasks_and_plain_retry_reruns_them(
        cluster, api, operator_proc, deployments, volume) -> None:
    ns = deployments
    (volume / "fail-last").touch()
    api.create_flowrun(ns, "first", deploymentName="counted")
    failed = _final(api, operator_proc, ns, "first")
    assert failed["status"]["state"]["type"] == "FAILED", failed["status"]
    assert _counter(volume) == ["1", "2"]

    refused = _flowpod(cluster, "retry", "first", "--from-failure", "-n", ns)
    assert refused.returncode == 0, refused.stderr  # the cause is still there: fails again
    assert _final(api, operator_proc, ns, "first-retry-1")["status"]["state"]["type"] == (
        "FAILED")
    assert _counter(volume) == ["1", "2"]  # the completed tasks did not run again

    (volume / "fail-last").unlink()
    done = _flowpod(cluster, "retry", "first", "--from-failure", "-n", ns, "--watch",
                    "--no-logs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: 30" in done.stdout
    retried = _final(api, operator_proc, ns, "first-retry-2")
    assert retried["status"]["result"] == {"value": 30}
    meta = retried["metadata"]
    assert meta["labels"][contract.LABEL_RETRY_OF] == "first"
    assert meta["labels"][contract.LABEL_DEPLOYMENT] == "counted"
    assert meta["annotations"][contract.ANNOTATION_RETRY_OF] == "first"
    assert retried["spec"]["reuseResultsFrom"] == {
        "flowRunName": "first", "flowRunUid": failed["metadata"]["uid"]}
    assert _counter(volume) == ["1", "2"]

    rerun = _flowpod(cluster, "retry", "first", "-n", ns)
    assert rerun.returncode == 0, rerun.stderr
    assert _final(api, operator_proc, ns, "first-retry-3")["status"]["result"] == {
        "value": 30}
    assert _counter(volume) == ["1", "2", "1", "2"]  # a plain retry runs every task


def test_a_large_result_is_kept_on_the_volume_and_referenced(
        api, operator_proc, deployments, volume, mount) -> None:
    created = api.create_flowrun(deployments, "big", deploymentName="large")
    status = _final(api, operator_proc, deployments, "big")["status"]
    uid = created["metadata"]["uid"]
    assert status["result"] == {"reference": f"file://{mount}/runs/{uid}/flow-result.pickle"}
    assert (volume / "runs" / uid / "flow-result.pickle").is_file()


def test_an_unmounted_store_fails_the_run_naming_the_field(api, operator_proc,
                                                           deployments, mount) -> None:
    api.create_flowrun(deployments, "unmounted-run", deploymentName="unmounted")
    state = _final(api, operator_proc, deployments, "unmounted-run")["status"]["state"]
    assert state["type"] == "FAILED"
    assert state["message"].startswith(
        f"The result storage 'file://{mount}-unmounted' cannot be used: directory "
        f"{mount}-unmounted does not exist (is the volume mounted there?); fix "
        f"spec.resultStorage of Deployment 'unmounted'")


def test_an_unknown_protocol_fails_the_run_before_any_pod(api, operator_proc,
                                                          deployments) -> None:
    api.create_flowrun(deployments, "unknown-run", deploymentName="unknown")
    state = _final(api, operator_proc, deployments, "unknown-run")["status"]["state"]
    assert state["type"] == "FAILED"
    assert state["message"].startswith("spec.resultStorage of Deployment 'unknown' is "
                                       "'nosuch://bucket/prefix', whose protocol 'nosuch' "
                                       "fsspec does not know")
    assert api.jobs(deployments, f"{contract.LABEL_FLOW_RUN}=unknown-run") == []


def test_the_api_server_refuses_a_storage_that_is_no_url(api, deployments) -> None:
    response = api.request("POST", contract.deployment_path(deployments), {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
        "metadata": {"name": "not-a-url"},
        "spec": {"entrypoint": f"{FLOWS}:pipeline", "image": harness.IMAGE,
                 "resultStorage": "/mnt/results"}})
    assert response.status_code == 422, response.text
    assert "spec.resultStorage must be an fsspec URL" in response.text


def test_retry_from_failure_is_refused_for_a_run_without_storage(
        cluster, api, operator_proc, deployments) -> None:
    api.create_flowrun(deployments, "plain", deploymentName="no-storage")
    _final(api, operator_proc, deployments, "plain")
    refused = _flowpod(cluster, "retry", "plain", "--from-failure", "-n", deployments)
    assert refused.returncode == 1
    assert "FlowRun 'plain' kept no task results to reuse" in refused.stderr
