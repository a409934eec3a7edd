"""DaskTaskRunner on the real plane: a Dask scheduler and worker run as pods on the test
node, and a flow-run pod whose Deployment points at the scheduler through env.

The operator runs the FlowRun; the engine in the flow-run pod records every task run while
the functions compute on the Dask worker's pod: each task run returns its process id and
the POD_ROLE of the pod it ran in, the worker pod's own. The FlowRun's task-run summary
counts the mapped runs and the one that failed on the worker.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.cluster

FLOW = "tests/operator/flows/dask_flow.py:on_dask"


def _pod(name: str, role: str, command: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
                                                          "labels": {"app": "dask"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": role, "image": harness.IMAGE,
                                     "command": command,
                                     "env": [{"name": "POD_ROLE", "value": role}]}]}}


@pytest.fixture(scope="module")
def dask_address(cluster, flow_namespace: str) -> Iterator[str]:
    """A scheduler pod and a worker pod (one process, two threads) on 127.0.0.1."""
    port = harness.free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _pod("dask-scheduler", "dask-scheduler", [
        "python", "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
        "--port", str(port), "--no-dashboard"])
    worker = _pod("dask-worker", "dask-worker", [
        "python", "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
        "--nthreads", "2", "--no-nanny", "--no-dashboard", "--name", "pod-worker"])
    for pod in (scheduler, worker):
        cluster.kubectl("create", "-n", flow_namespace, "-f", "-", input=json.dumps(pod))
    try:
        with distributed.Client(address, timeout=120) as client:
            wait_for("the Dask worker pod to join its scheduler",
                     lambda: list(client.scheduler_info()["workers"].values()),
                     lambda workers: len(workers) == 1, timeout=120)
        yield address
    finally:
        cluster.kubectl("delete", "pods", "-n", flow_namespace, "-l", "app=dask",
                        "--grace-period=1", "--wait=false", check=False)


def test_task_runs_compute_on_the_dask_worker_pod(api, cluster, flow_namespace: str,
                                                  operator_proc, dask_address: str) -> None:
    ns = flow_namespace
    api.create_deployment(ns, "on-dask", entrypoint=FLOW, podTemplate={"env": [
        {"name": contract.ENV_DASK_ADDRESS, "value": dask_address},
        {"name": "POD_ROLE", "value": "flow-run"}]})
    api.create_flowrun(ns, "on-dask-1", deploymentName="on-dask", parameters={"n": 30})
    flowrun = api.wait_final(ns, "on-dask-1", timeout=180,
                             explain=lambda: operator_proc.log_tail(needle='"on-dask-1"'))
    status = flowrun["status"]
    assert status["state"]["type"] == "COMPLETED", status
    result = status["result"]["value"]
    assert result["sum"] == sum(x * x for x in range(30))
    assert result["roles"] == ["dask-worker"]  # every task function ran in the worker's pod
    assert result["flow"][1] == "flow-run" and result["flow"][0] not in result["pids"]
    assert len(result["pids"]) == 1  # the one worker process (no nanny)
    assert result["refused"] == "Task run raised ValueError: this task fails on the Dask worker"
    assert status["taskRuns"]["counts"] == {"COMPLETED": 30, "FAILED": 1}
    assert status["taskRuns"]["total"] == 31
    assert [failed["name"] for failed in status["taskRuns"]["failed"]] == ["refuse"]
