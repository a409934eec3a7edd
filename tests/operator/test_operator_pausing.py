"""Pause, suspend and resume on the real plane, with the engine in real pods.

A Suspended run holds no pod while it waits; `flowpod resume` with valid input gives it a new
attempt, which replays the flow: tasks that completed before the suspension return their
persisted results (the result store and a side-effect counter live on a hostPath volume
every pod of the run mounts) and suspend_flow_run returns the input. A Paused run keeps its
pod and carries on in it. The operator validates the input against the schema the engine
published and refuses bad input (the run stays paused); an expired pause fails the run; a
run that is not paused cannot be resumed (the CLI and the CRD's CEL rule refuse it).
Flows: tests/operator/flows/pause_cases.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

CASES = "tests/operator/flows/pause_cases.py"
GOOD = {"approved": True, "approver": "ada"}


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pause-volume")


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc, volume) -> str:
    """Create every run of this module at once; they wait and run concurrently."""
    ns = flow_namespace
    template = {
        "volumes": [{"name": "data", "hostPath": {"path": str(volume),
                                                   "type": "DirectoryOrCreate"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "env": [{"name": "PAUSE_COUNTER_DIR", "value": "/data/counters"}]}
    # Every attempt reads the results the suspended one persisted, from the shared volume.
    (volume / "results").mkdir(exist_ok=True)
    api.create_deployment(ns, "suspends", entrypoint=f"{CASES}:suspends_for_approval",
                          podTemplate=template, resultStorage="file:///data/results")
    api.create_flowrun(ns, "suspended", deploymentName="suspends",
                       parameters={"tag": "suspended"})
    api.create_flowrun(ns, "suspend-expires", deploymentName="suspends",
                       parameters={"tag": "expires", "timeout": 3})
    for name, function, parameters in (("paused", "pauses_for_approval", {}),
                                       ("word", "pauses_for_a_word", {}),
                                       ("pause-expires", "pauses_for_approval", {"timeout": 3}),
                                       ("completes", "pauses_for_a_word", None)):
        api.create_flowrun(ns, name, entrypoint=f"{CASES}:{function}", image=harness.IMAGE,
                           **({"parameters": parameters} if parameters is not None else {}))
    return ns


def _flowpod(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *args,
                           "--kubeconfig", str(cluster.kubeconfig)], cwd=harness.REPO,
                          env=env, capture_output=True, text=True, timeout=90)


def _state_name(flowrun: dict) -> str | None:
    return ((flowrun.get("status") or {}).get("state") or {}).get("name")


def _wait_state(api, ns: str, name: str, state: str, operator_proc, timeout: float = 60):
    return api.wait_flowrun(ns, name, lambda f: _state_name(f) == state, what=state,
                            timeout=timeout,
                            explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))


def _counter(volume: Path, name: str) -> int:
    path = volume / "counters" / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def _live_pods(api, ns: str, run: str) -> list[str]:
    pods = api.pods(ns, f"{contract.LABEL_FLOW_RUN}={run}")
    return [p["metadata"]["name"] for p in pods
            if p["status"].get("phase") not in ("Succeeded", "Failed")]


def test_suspended_run_waits_without_a_pod_and_resumes_without_rerunning_tasks(
        cluster, api, runs, operator_proc, volume) -> None:
    ns = runs
    suspended = _wait_state(api, ns, "suspended", "Suspended", operator_proc)
    pause = suspended["status"]["pause"]
    assert pause["suspended"] is True and pause["key"] == "suspend-1"
    assert set(pause["inputSchema"]["properties"]) == {"approved", "approver"}
    wait_for("the suspended run's pod to end", lambda: _live_pods(api, ns, "suspended"),
             lambda live: not live, timeout=30)
    # Exit 0: the Job is done, and the operator sees no crash.
    wait_for("the suspended run's Job to succeed",
             lambda: api.jobs(ns, f"{contract.LABEL_FLOW_RUN}=suspended"),
             lambda jobs: [j["status"].get("succeeded") for j in jobs] == [1], timeout=30)
    assert _state_name(api.flowrun(ns, "suspended")) == "Suspended"
    assert _counter(volume, "suspended-before") == 1

    refused = _flowpod(cluster, "resume", "suspended", "-n", ns, "-i", "approved=maybe",
                       "-i", "approver=ada")
    assert refused.returncode == 1
    assert "spec.resume.input.approved: 'maybe' is not of type 'boolean'" in refused.stderr
    assert _state_name(api.flowrun(ns, "suspended")) == "Suspended"
    assert not _live_pods(api, ns, "suspended")
    reasons = [e["reason"] for e in api.events(ns, "suspended")]
    assert "ResumeRefused" in reasons

    resumed = _flowpod(cluster, "resume", "suspended", "-n", ns, "--input", json.dumps(GOOD))
    assert resumed.returncode == 0, resumed.stderr
    final = api.wait_final(ns, "suspended", timeout=90,
                           explain=lambda: operator_proc.log_tail(needle='"suspended"'))
    assert final["status"]["state"]["type"] == "COMPLETED", final["status"]
    assert final["status"]["result"]["value"] == {**GOOD, "before": 1, "after": 1}
    assert final["status"]["attempt"] == 2
    assert _counter(volume, "suspended-before") == 1, "the task before the suspension ran again"
    assert _counter(volume, "suspended-after") == 1
    assert "pause" not in final["status"]


def test_pause_for_input_refuses_bad_input_and_returns_good_input_in_the_same_pod(
        cluster, api, runs, operator_proc) -> None:
    ns = runs
    paused = _wait_state(api, ns, "paused", "Paused", operator_proc)
    assert paused["status"]["pause"]["suspended"] is False
    (pod,) = _live_pods(api, ns, "paused")
    # The GitOps path: spec.resume set with kubectl, its input wrong.
    cluster.kubectl("patch", "flowrun", "paused", "-n", ns, "--type=merge", "-p",
                    json.dumps({"spec": {"resume": {"input": {"approved": True}}}}))
    refused = api.wait_flowrun(ns, "paused",
                               lambda f: "refused" in (f["status"].get("pause") or {}),
                               what="the operator's refusal", timeout=30)
    message = refused["status"]["pause"]["refused"]["message"]
    assert "spec.resume.input: 'approver' is a required property" in message
    assert _state_name(refused) == "Paused" and _live_pods(api, ns, "paused") == [pod]

    resumed = _flowpod(cluster, "resume", "paused", "-n", ns, "-i", "approved=true",
                       "-i", "approver=ada")
    assert resumed.returncode == 0, resumed.stderr
    final = api.wait_final(ns, "paused", timeout=60)
    assert final["status"]["state"]["type"] == "COMPLETED", final["status"]
    assert final["status"]["result"]["value"] == GOOD
    assert final["status"]["attempt"] == 1, "carried on in the same pod"
    names = [h["name"] for h in final["status"]["stateHistory"]]
    assert names[-3:] == ["Paused", "Running", "Completed"]


def test_pause_for_a_plain_type(cluster, api, runs, operator_proc) -> None:
    ns = runs
    paused = _wait_state(api, ns, "word", "Paused", operator_proc)
    assert paused["status"]["pause"]["inputSchema"] == {"type": "string"}
    refused = _flowpod(cluster, "resume", "word", "-n", ns, "--input", "3")
    assert refused.returncode == 1 and "3 is not of type 'string'" in refused.stderr
    resumed = _flowpod(cluster, "resume", "word", "-n", ns, "--input", '"yes"')
    assert resumed.returncode == 0, resumed.stderr
    assert api.wait_final(ns, "word")["status"]["result"]["value"] == "YES"


def test_expired_pauses_fail_the_run(api, runs, operator_proc) -> None:
    ns = runs
    paused = api.wait_final(ns, "pause-expires", timeout=60)
    assert paused["status"]["state"]["type"] == "FAILED"
    assert "paused for 3 s and not resumed" in paused["status"]["state"]["message"]
    suspended = api.wait_final(ns, "suspend-expires", timeout=60)
    assert suspended["status"]["state"]["type"] == "FAILED"
    assert "suspended and not resumed before" in suspended["status"]["state"]["message"]


def test_resume_of_a_run_that_is_not_paused_is_refused(cluster, api, runs,
                                                       operator_proc) -> None:
    ns = runs
    _wait_state(api, ns, "completes", "Paused", operator_proc)
    assert _flowpod(cluster, "resume", "completes", "-n", ns, "--input", '"go"').returncode == 0
    assert api.wait_final(ns, "completes")["status"]["state"]["type"] == "COMPLETED"
    cli = _flowpod(cluster, "resume", "completes", "-n", ns, "--input", '"again"')
    assert cli.returncode == 1
    assert "is not Paused or Suspended (Completed); only a paused run can be resumed" in \
        cli.stderr
    kubectl = cluster.kubectl("patch", "flowrun", "completes", "-n", ns, "--type=merge", "-p",
                              json.dumps({"spec": {"resume": {"input": "again"}}}),
                              check=False)
    assert kubectl.returncode != 0
    assert ("spec.resume can only be set while the run is Paused or Suspended; it is "
            "Completed") in kubectl.stderr
