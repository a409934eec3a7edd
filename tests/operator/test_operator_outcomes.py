"""The operator on the real plane: every way a run ends, with the engine in real pods.

All runs of this module are created at once by the `runs` fixture and run concurrently in
one namespace (the operator watches only that one); each test then waits for its own run.
Flows live in tests/operator/flows/operator_cases.py (repo-relative: the test node runs
pods in the repository root).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

import operator_harness as harness
from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def _deployments(api: harness.Api, ns: str) -> None:
    api.create_deployment(ns, "hello", entrypoint=f"{CASES}:hello", parameterSchema=SCHEMA)
    api.create_deployment(ns, "hog", entrypoint=f"{CASES}:hog_memory",
                          podTemplate={"resources": {"limits": {"memory": "64Mi"}}})
    api.create_deployment(ns, "no-image", entrypoint=f"{CASES}:hello",
                          image="registry.invalid/flowpod/nope:1", pendingTimeoutSeconds=10)
    api.create_deployment(ns, "slow", entrypoint=f"{CASES}:sleeps", timeoutSeconds=2,
                          cancellationGracePeriodSeconds=2)
    api.create_deployment(ns, "flaky", entrypoint=f"{CASES}:hard_exit3", retries=1)


def _adhoc(api: harness.Api, ns: str, name: str, function: str, **spec) -> None:
    api.create_flowrun(ns, name, entrypoint=f"{CASES}:{function}", image=harness.IMAGE,
                       **spec)


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> dict[str, float]:
    """Create every run of this module; returns name -> creation time (monotonic)."""
    ns = flow_namespace
    _deployments(api, ns)
    started: dict[str, float] = {}

    def mark(name: str) -> None:
        started[name] = time.monotonic()

    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    api.create_flowrun(ns, "completes", deploymentName="hello", parameters={"n": 4})
    mark("completes")
    api.create_flowrun(ns, "scheduled", deploymentName="hello",
                       scheduledTime=contract.format_time(soon, fraction=False))
    api.create_flowrun(ns, "bad-params", deploymentName="hello", parameters={"n": "four"})
    api.create_flowrun(ns, "no-deployment", deploymentName="x")
    api.create_flowrun(ns, "oom", deploymentName="hog")
    api.create_flowrun(ns, "unknown-image", deploymentName="no-image")
    api.create_flowrun(ns, "deadline", deploymentName="slow")
    api.create_flowrun(ns, "retried", deploymentName="flaky")
    _adhoc(api, ns, "raises", "raises")
    _adhoc(api, ns, "unloadable", "no_such_flow")
    _adhoc(api, ns, "exit3", "exit3")
    _adhoc(api, ns, "hard-exit3", "hard_exit3")
    _adhoc(api, ns, "sigkill", "sigkill_self")
    _adhoc(api, ns, "sigterm", "sigterm_self")
    return started


@pytest.fixture
def final(api, flow_namespace, operator_proc, runs):
    def wait(name: str, timeout: float = 60) -> dict:
        return api.wait_final(flow_namespace, name, timeout=timeout,
                              explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))
    return wait


def _state(flowrun: dict) -> dict:
    return flowrun["status"]["state"]


def _history(flowrun: dict) -> list[str]:
    return [entry["name"] for entry in flowrun["status"]["stateHistory"]]


def test_a_flow_completes(final, api, flow_namespace):
    flowrun = final("completes")
    status = flowrun["status"]
    assert _state(flowrun)["type"] == "COMPLETED", status
    assert _history(flowrun) == ["Scheduled", "Pending", "Running", "Completed"]
    assert status["result"] == {"value": {"n": 4, "double": 8}}
    assert status["jobName"] == "completes-1" and status["attempt"] == 1
    assert status["podName"].startswith("completes-1-")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Succeeded": "True", "Ready": "True"}
    # The operator fills in how the pod ended once it has, and posts an Event per transition.
    flowrun = api.wait_flowrun(flow_namespace, "completes",
                               lambda f: f["status"].get("exitCode") == 0, what="exitCode 0")
    assert flowrun["status"]["reason"] == "Completed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reasons = [e["reason"] for e in api.events(flow_namespace, "completes")]
        if {"Scheduled", "Pending", "Running", "Completed"} <= set(reasons):
            break
        time.sleep(0.2)
    assert {"Scheduled", "Pending", "Running", "Completed"} <= set(reasons)


def test_a_scheduled_run_waits_for_its_time(final, api, flow_namespace, runs):
    flowrun = final("scheduled")
    assert _state(flowrun)["type"] == "COMPLETED"
    history = flowrun["status"]["stateHistory"]
    assert history[0]["name"] == "Scheduled"
    assert history[0]["message"].startswith("Scheduled to start at ")
    (job,) = api.jobs(flow_namespace, f"{contract.LABEL_FLOW_RUN}=scheduled")
    created = contract.parse_time(job["metadata"]["creationTimestamp"])
    scheduled = contract.parse_time(flowrun["spec"]["scheduledTime"])
    assert created >= scheduled


def test_a_raising_flow_fails(final):
    state = _state(final("raises"))
    assert state["type"] == "FAILED" and "raised on purpose by the test flow" in state["message"]


def test_invalid_parameters_fail_before_any_job(final, api, flow_namespace):
    state = _state(final("bad-params"))
    assert state["type"] == "FAILED"
    assert state["message"].startswith("Validation of the flow parameters failed: "
                                       "parameter 'n': 'four' is not of type 'integer'")
    assert api.jobs(flow_namespace, f"{contract.LABEL_FLOW_RUN}=bad-params") == []


def test_a_missing_deployment_fails(final, flow_namespace):
    state = _state(final("no-deployment"))
    assert state == {**state, "type": "FAILED",
                     "message": f"Deployment 'x' not found in namespace '{flow_namespace}'"}


def test_an_unloadable_entrypoint_fails(final):
    state = _state(final("unloadable"))
    assert state["type"] == "FAILED"
    assert state["message"].startswith("Flow could not be retrieved from entrypoint")


def test_sys_exit_3_crashes(final):
    # The engine catches SystemExit and reports Crashed itself; the operator leaves it be.
    state = _state(final("exit3"))
    assert state["type"] == "CRASHED", state
    assert "SystemExit: 3" in state["message"]


def test_exit_3_past_the_engine_crashes_with_the_code(final):
    flowrun = final("hard-exit3")
    state = _state(flowrun)
    assert state["type"] == "CRASHED", state
    assert state["message"].startswith("exited with code 3")
    assert flowrun["status"]["exitCode"] == 3 and flowrun["status"]["reason"] == "Error"


def test_sigkill_to_itself_crashes(final):
    flowrun = final("sigkill")
    state = _state(flowrun)
    assert state["type"] == "CRASHED", state
    assert state["message"].startswith("exited with code 137 (SIGKILL")
    assert flowrun["status"]["exitCode"] == 137


def test_over_its_memory_limit_crashes_oomkilled(final):
    flowrun = final("oom")
    state = _state(flowrun)
    assert state["type"] == "CRASHED", state
    assert state["message"].startswith("OOMKilled: the flow used more memory than its limit "
                                       "of 64Mi")
    assert flowrun["status"]["reason"] == "OOMKilled"


def test_an_unknown_image_crashes_after_the_pending_timeout(final, api, flow_namespace):
    flowrun = final("unknown-image")
    state = _state(flowrun)
    assert state["type"] == "CRASHED", state
    assert flowrun["status"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "could not start for 10s (pendingTimeoutSeconds)" in state["message"]
    # Its pod never started and is removed, so it cannot start later.
    deadline = time.monotonic() + 15
    while api.pods(flow_namespace, f"{contract.LABEL_FLOW_RUN}=unknown-image"):
        assert time.monotonic() < deadline, "the unstarted pod was not removed"
        time.sleep(0.2)


def test_sigterm_without_cancel_crashes(final):
    state = _state(final("sigterm"))
    assert state["type"] == "CRASHED", state


def test_timeout_seconds_is_the_jobs_active_deadline(final, api, flow_namespace):
    flowrun = final("deadline")
    assert _state(flowrun)["type"] == "CRASHED", flowrun["status"]
    flowrun = api.wait_flowrun(flow_namespace, "deadline",
                               lambda f: f["status"].get("reason") == "DeadlineExceeded",
                               what="reason DeadlineExceeded", timeout=20)
    (job,) = api.jobs(flow_namespace, f"{contract.LABEL_FLOW_RUN}=deadline")
    assert job["spec"]["activeDeadlineSeconds"] == 2


def test_an_infrastructure_crash_is_retried_in_a_new_job(final, api, flow_namespace):
    flowrun = final("retried")
    status = flowrun["status"]
    assert _state(flowrun)["type"] == "CRASHED", status
    assert status["attempt"] == 2 and status["jobName"] == "retried-2"
    history = _history(flowrun)
    assert history == ["Scheduled", "Pending", "Running", "AwaitingRetry", "Pending", "Running",
                       "Crashed"]
    retry = status["stateHistory"][history.index("AwaitingRetry")]
    assert retry["message"].startswith("exited with code 3")
    assert retry["message"].endswith("retrying as attempt 2 of 2")
    jobs = sorted(j["metadata"]["name"] for j in
                  api.jobs(flow_namespace, f"{contract.LABEL_FLOW_RUN}=retried"))
    assert jobs == ["retried-1", "retried-2"]
    # Never two pods at once: attempt 2's pod was made after attempt 1's container ended.
    pods = {p["metadata"]["labels"][harness.LABEL_ATTEMPT]: p for p in
            api.pods(flow_namespace, f"{contract.LABEL_FLOW_RUN}=retried")}
    ended = pods["1"]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    assert pods["2"]["metadata"]["creationTimestamp"] >= ended
