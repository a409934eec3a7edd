"""A Deployment with a queueName, on the real plane, with this test playing Kueue's part: it
admits a Job by patching spec.suspend to false, preempts it by patching it back to true, and
admits it again. No Kueue is installed; flowpod follows Kueue's convention only (the
kueue.x-k8s.io/queue-name label on a Job created suspended). The real Job controller
deletes the preempted pod and, re-admitted, makes a new one.
The runs of this module proceed concurrently in one namespace."""

from __future__ import annotations

import pytest

from flowpod import contract
from flowpod_devcluster.waiting import wait_for

import operator_harness as harness

CASES = "tests/operator/flows/operator_cases.py"
WAITING = "waiting for admission by queue batch-q"


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    # Long enough to be preempted while it runs; the new pod sleeps as long again.
    api.create_deployment(flow_namespace, "queued", entrypoint=f"{CASES}:sleeps",
                          queueName="batch-q", parameters={"seconds": 12},
                          cancellationGracePeriodSeconds=2)
    api.create_deployment(flow_namespace, "never-admitted", entrypoint=f"{CASES}:hello",
                          queueName="batch-q", admissionTimeoutSeconds=4)
    api.create_flowrun(flow_namespace, "preempted", deploymentName="queued")
    api.create_flowrun(flow_namespace, "timed-out", deploymentName="never-admitted")


def _job(api, ns: str, name: str) -> dict:
    job = api.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    assert job is not None, f"Job {ns}/{name} not found"
    return job


def _suspend(api, ns: str, name: str, suspend: bool) -> None:
    """What Kueue does: admit (false) or preempt (true) a Job."""
    response = api.request("PATCH", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                           {"spec": {"suspend": suspend}}, contract.MERGE_PATCH)
    response.raise_for_status()


def _pods(api, ns: str, run: str) -> list[dict]:
    return api.pods(ns, f"{contract.LABEL_FLOW_RUN}={run}")


def test_a_queued_run_waits_is_preempted_and_goes_on_when_admitted_again(
        runs, api, flow_namespace, operator_proc):
    ns, explain = flow_namespace, lambda: operator_proc.log_tail(needle='"preempted"')
    flowrun = api.wait_flowrun(
        ns, "preempted", lambda f: harness.state_type(f) == "PENDING"
        and f["status"]["state"]["message"] == WAITING, what="waiting for admission",
        timeout=60, explain=explain)
    job = _job(api, ns, flowrun["status"]["jobName"])
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][contract.LABEL_KUEUE_QUEUE_NAME] == "batch-q"
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert _pods(api, ns, "preempted") == []

    _suspend(api, ns, job["metadata"]["name"], False)  # admitted
    running = api.wait_flowrun(ns, "preempted", lambda f: harness.state_type(f) == "RUNNING",
                               what="Running after admission", timeout=60, explain=explain)
    first_pod = running["status"]["podName"]

    _suspend(api, ns, job["metadata"]["name"], True)  # preempted
    preempted = (f"{WAITING} (preempted: pod {first_pod} was stopped; the run goes on in a "
                 f"new pod of Job {job['metadata']['name']} when admitted again)")
    back = api.wait_flowrun(ns, "preempted", lambda f: harness.state_type(f) != "RUNNING",
                            what="the preemption seen", timeout=60, explain=explain)
    assert back["status"]["state"]["type"] == "PENDING", back["status"]["state"]
    assert back["status"]["state"]["message"] == preempted
    wait_for("the preempted pod deleted by the Job controller",
             lambda: _pods(api, ns, "preempted"), lambda pods: not pods, timeout=60)
    # The engine of the stopped pod did not write its own Crashed over the wait.
    assert api.flowrun(ns, "preempted")["status"]["state"]["message"] == preempted

    _suspend(api, ns, job["metadata"]["name"], False)  # admitted again
    final = api.wait_final(ns, "preempted", timeout=120, explain=explain)
    status = final["status"]
    assert status["state"]["type"] == "COMPLETED", status["state"]
    # The same attempt in a new pod of the same Job: preemption used up no retry.
    assert (status["attempt"], status["jobName"]) == (1, job["metadata"]["name"])
    assert status["podName"] != first_pod
    messages = [s["message"] for s in status["stateHistory"] if s["type"] == "PENDING"]
    assert WAITING in messages and preempted in messages
    assert not any(s["type"] == "CRASHED" for s in status["stateHistory"])


def test_a_run_its_queue_never_admits_ends_at_its_admission_timeout(
        runs, api, flow_namespace, operator_proc):
    final = api.wait_final(flow_namespace, "timed-out", timeout=60,
                           explain=lambda: operator_proc.log_tail(needle='"timed-out"'))
    status = final["status"]
    assert (status["state"]["type"], status["reason"]) == ("CRASHED", "PendingTimeout")
    assert status["state"]["message"] == (
        f"PendingTimeout: Job {status['jobName']} was not admitted by queue batch-q within "
        "admissionTimeoutSeconds (4s); check the queue's ClusterQueue quota "
        "(`kubectl get workloads`)")
    assert WAITING in [s["message"] for s in status["stateHistory"]]
    # Deleted, so that the queue cannot admit it after the run ended.
    wait_for("the timed-out Job deleted",
             lambda: api.get(f"/apis/batch/v1/namespaces/{flow_namespace}/jobs/"
                             f"{status['jobName']}"), lambda job: job is None, timeout=60)
