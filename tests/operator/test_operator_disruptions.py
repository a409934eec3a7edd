"""Someone else removes a running flow's pod, on the real plane: a plain delete and an
eviction through the Eviction API (which marks the pod with the DisruptionTarget condition).
Either way the run ends Crashed, never stuck, and the message says what happened.
An evicted pod's Job fails by its podFailurePolicy (reason PodFailurePolicy). The runs of
this module proceed concurrently in one namespace."""

from __future__ import annotations

import pytest

import operator_harness as harness
from flowpod_devcluster.waiting import wait_for

CASES = "tests/operator/flows/operator_cases.py"


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    api.create_deployment(flow_namespace, "sleeper", entrypoint=f"{CASES}:sleeps",
                          cancellationGracePeriodSeconds=2)
    for name in ("deleted", "evicted", "disrupted"):
        api.create_flowrun(flow_namespace, name, deploymentName="sleeper")


def _running_pod(api, ns: str, name: str, operator_proc) -> str:
    flowrun = api.wait_flowrun(
        ns, name, lambda f: harness.state_type(f) == "RUNNING" and f["status"].get("podName"),
        what="Running with a pod", timeout=30,
        explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))
    return flowrun["status"]["podName"]


def test_a_pod_deleted_by_someone_else_ends_crashed(runs, api, cluster, flow_namespace,
                                                     operator_proc):
    pod = _running_pod(api, flow_namespace, "deleted", operator_proc)
    cluster.kubectl("delete", "pod", "-n", flow_namespace, pod, "--wait=false")
    flowrun = api.wait_final(flow_namespace, "deleted", timeout=30)
    state = flowrun["status"]["state"]
    # The operator's exact verdict, not the engine's "terminated by SIGTERM": it wrote first.
    assert (state["type"], flowrun["status"]["reason"]) == ("CRASHED", "PodDeleted"), state
    assert state["message"] == (f"pod deleted: pod {pod} was deleted before the run reported "
                                "a final state")


def test_an_evicted_pod_ends_crashed(runs, api, cluster, flow_namespace, operator_proc):
    pod = _running_pod(api, flow_namespace, "evicted", operator_proc)
    api.create(f"/api/v1/namespaces/{flow_namespace}/pods/{pod}/eviction",
               {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": flow_namespace}})
    flowrun = api.wait_final(flow_namespace, "evicted", timeout=30)
    state = flowrun["status"]["state"]
    assert (state["type"], flowrun["status"]["reason"]) == ("CRASHED", "Evicted"), state
    assert state["message"].startswith(f"Evicted: pod {pod} was evicted"), state


def test_an_evicted_pod_fails_its_job_by_the_pod_failure_policy(runs, api, flow_namespace,
                                                                operator_proc):
    """The Job says why it failed (the DisruptionTarget rule), not BackoffLimitExceeded."""
    pod = _running_pod(api, flow_namespace, "disrupted", operator_proc)
    api.create(f"/api/v1/namespaces/{flow_namespace}/pods/{pod}/eviction",
               {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": flow_namespace}})
    flowrun = api.wait_final(flow_namespace, "disrupted", timeout=30)
    assert flowrun["status"]["reason"] == "Evicted", flowrun["status"]["state"]
    path = f"/apis/batch/v1/namespaces/{flow_namespace}/jobs/{flowrun['status']['jobName']}"

    def failed(job):
        return [c for c in (job or {}).get("status", {}).get("conditions") or []
                if c["type"] == "Failed" and c["status"] == "True"]
    (condition,) = failed(wait_for("the Job failed", lambda: api.get(path), failed, timeout=60))
    assert condition["reason"] == "PodFailurePolicy", condition
    assert "DisruptionTarget" in condition["message"], condition
