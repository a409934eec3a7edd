"""Runs that start runs in other pods (flowpod.run_deployment) on the real plane, with the
engine in pods: a 20-child fan-out summed by its parent, children deleted with their parent
by the garbage collector, a parent SIGKILLed after starting its children that re-attaches
to them on its retry, and cancellation passed from a parent to its live children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import flowpod
import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for

CASES = "tests/operator/flows/fanout_cases.py"
N = 20
SUM = sum(i + 1 for i in range(N))


@pytest.fixture(scope="module")
def deployments(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    api.create_deployment(ns, "add-one", entrypoint=f"{CASES}:add_one")
    api.create_deployment(ns, "fan-out", entrypoint=f"{CASES}:fan_out")
    api.create_deployment(ns, "slow-add", entrypoint=f"{CASES}:add_one_slowly")
    api.create_deployment(ns, "fan-out-retried", entrypoint=f"{CASES}:fan_out", retries=1)
    api.create_deployment(ns, "sleeper", entrypoint=f"{CASES}:sleeps",
                          cancellationGracePeriodSeconds=2)
    api.create_deployment(ns, "fan-out-sleepers", entrypoint=f"{CASES}:fan_out_sleepers",
                          cancellationGracePeriodSeconds=2)


def _children(api: harness.Api, ns: str, parent: str) -> list[dict]:
    items = api.get(contract.flowrun_path(ns),
                    labelSelector=f"{contract.LABEL_PARENT_FLOW_RUN}={parent}")["items"]
    return sorted(items, key=lambda f: f["metadata"]["name"])


def _final(api, ns, name, operator_proc, timeout=120) -> dict:
    return api.wait_final(ns, name, timeout=timeout,
                          explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))


def test_a_parent_fans_out_to_20_pods_and_sums_their_results(api, flow_namespace, cluster,
                                                             operator_proc, deployments):
    ns = flow_namespace
    api.create_flowrun(ns, "sum-20", deploymentName="fan-out", parameters={"n": N})
    parent = _final(api, ns, "sum-20", operator_proc)
    assert parent["status"]["state"]["type"] == "COMPLETED", parent["status"]
    assert parent["status"]["result"]["value"] == SUM
    children = _children(api, ns, "sum-20")
    assert [c["metadata"]["name"] for c in children] == sorted(
        f"sum-20-add-one-{i}" for i in range(N))
    for child in children:
        assert child["status"]["state"]["type"] == "COMPLETED"
        owner, = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "FlowRun", "sum-20", parent["metadata"]["uid"])
        # Each child ran in a pod of its own.
        assert child["status"]["podName"] != parent["status"]["podName"]
    assert len({c["status"]["podName"] for c in children}) == N
    # `flowpod get RUN` lists them.
    shown = subprocess.run([sys.executable, "-m", "flowpod_operator.cli", "get", "sum-20",
                            "-n", ns, "--kubeconfig", str(cluster.kubeconfig)],
                           capture_output=True, text=True, timeout=60)
    assert f"Child runs  {N} (Completed {N})" in shown.stdout, shown.stderr
    assert "sum-20-add-one-7  Completed" in shown.stdout

    # Deleting the parent deletes its children (the garbage collector follows the owner).
    response = api.request("DELETE", contract.flowrun_path(ns, "sum-20"))
    assert response.status_code == 200, response.text
    wait_for("the children deleted with their parent", lambda: _children(api, ns, "sum-20"),
             lambda left: not left, timeout=60)


def _engine_process(namespace: str, flowrun: str, attempt: int) -> int:
    """The pid of the engine the test node started for this FlowRun's attempt (its env)."""
    wanted = {f"{contract.ENV_FLOW_RUN_NAMESPACE}={namespace}".encode(),
              f"{contract.ENV_FLOW_RUN_NAME}={flowrun}".encode(),
              f"{contract.ENV_ATTEMPT}={attempt}".encode()}
    for proc in Path("/proc").iterdir():
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and wanted <= env:
            return int(proc.name)
    raise AssertionError(f"no engine process of {namespace}/{flowrun} attempt {attempt}")


def test_a_killed_parent_reattaches_to_its_children_on_retry(api, flow_namespace,
                                                             operator_proc, deployments):
    ns = flow_namespace
    api.create_flowrun(ns, "phoenix", deploymentName="fan-out-retried",
                       parameters={"n": N, "deployment": "slow-add"})
    wait_for(f"{N} children of phoenix", lambda: _children(api, ns, "phoenix"),
             lambda kids: len(kids) == N, timeout=90)
    # The parent is waiting for its children: kill its engine outright (no final state).
    os.kill(_engine_process(ns, "phoenix", 1), signal.SIGKILL)
    parent = _final(api, ns, "phoenix", operator_proc, timeout=180)
    assert parent["status"]["state"]["type"] == "COMPLETED", parent["status"]
    assert parent["status"]["attempt"] == 2
    assert "AwaitingRetry" in [s["name"] for s in parent["status"]["stateHistory"]]
    assert parent["status"]["result"]["value"] == SUM
    children = _children(api, ns, "phoenix")
    assert len(children) == N  # found again by name, not started again
    assert {c["status"]["state"]["type"] for c in children} == {"COMPLETED"}


def test_cancelling_a_parent_cancels_its_live_children(api, flow_namespace, operator_proc,
                                                       deployments):
    ns = flow_namespace
    api.create_flowrun(ns, "waits", deploymentName="fan-out-sleepers", parameters={"n": 3})
    running = wait_for("3 children Running", lambda: _children(api, ns, "waits"),
                       lambda kids: len(kids) == 3 and all(
                           harness.state_type(k) == "RUNNING" for k in kids), timeout=90)
    api.cancel(ns, "waits")
    parent = _final(api, ns, "waits", operator_proc, timeout=60)
    assert parent["status"]["state"]["type"] == "CANCELLED"
    for child in running:
        name = child["metadata"]["name"]
        final = _final(api, ns, name, operator_proc, timeout=60)
        assert final["spec"]["cancel"] is True
        assert final["status"]["state"]["type"] == "CANCELLED", final["status"]


def test_run_deployment_from_a_laptop_with_a_kubeconfig(api, flow_namespace, cluster,
                                                        operator_proc, deployments):
    ns = flow_namespace
    state = flowpod.run_deployment("add-one", {"x": 41}, namespace=ns,
                                   kubeconfig=str(cluster.kubeconfig), timeout=120)
    assert state.is_completed(), state
    assert state.result() == 42
    child = api.flowrun(ns, state.flow_run_name)
    assert state.flow_run_name.startswith("add-one-")  # no parent: a generated name
    assert "ownerReferences" not in child["metadata"]
    assert contract.LABEL_PARENT_FLOW_RUN not in child["metadata"]["labels"]
    # timeout=0 returns at once, with the state the run has now.
    early = flowpod.run_deployment("add-one", {"x": 1}, namespace=ns, timeout=0,
                                   kubeconfig=str(cluster.kubeconfig))
    assert not early.is_final()


def test_the_flow_run_service_account_may_start_and_watch_runs_and_nothing_more(
        cluster, flow_namespace):
    """examples/flow-run-rbac.yaml (what this namespace has), as the API server rules it."""
    ns = flow_namespace
    who = f"--as=system:serviceaccount:{ns}:{contract.DEFAULT_SERVICE_ACCOUNT}"

    def can(*args: str, namespace: str = ns) -> bool:
        out = cluster.kubectl("auth", "can-i", *args, who, "-n", namespace, check=False)
        return out.stdout.strip() == "yes"

    for verb in ("create", "get", "watch"):
        assert can(verb, "flowruns.flowpod.io"), verb
    assert can("get", "deployments.flowpod.io")
    for verb in ("delete", "list", "update", "deletecollection"):
        assert not can(verb, "flowruns.flowpod.io"), verb
    for resource in ("pods", "jobs.batch", "secrets"):
        for verb in ("get", "create", "delete"):
            assert not can(verb, resource), (verb, resource)
    assert not can("create", "flowruns.flowpod.io", namespace="kube-system")
