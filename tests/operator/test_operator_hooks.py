"""Hooks after hard kills on the real plane, with the engine in real pods: a flow whose pod
is OOM-killed or SIGKILLed runs its on_crashed hooks exactly once, in the operator's hook
Job, and the outcome (ran, or failed and why) is in status.hooks and an Event; a
cooperative cancel runs on_cancellation in the engine itself and makes no hook Job.

Every hook appends a line to a file on a hostPath volume (tests/operator/flows/
hook_cases.py), so the tests count how often it ran.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hooks_harness import (CASES, hook_jobs, hook_volume, lines, wait_events,
                           wait_hooks_done)

from flowpod import contract

@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hooks-out")
    path.chmod(0o777)
    return path


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc, out) -> None:
    ns, volume = flow_namespace, hook_volume(out)
    api.create_deployment(ns, "hog", entrypoint=f"{CASES}:hog_memory",
                          podTemplate={**volume, "resources": {"limits": {"memory": "64Mi"}}})
    api.create_deployment(ns, "killed", entrypoint=f"{CASES}:sigkill_self", podTemplate=volume)
    api.create_deployment(ns, "broken", entrypoint=f"{CASES}:sigkill_self_with_a_broken_hook",
                          podTemplate=volume)
    api.create_deployment(ns, "sleeper", entrypoint=f"{CASES}:sleeps", podTemplate=volume,
                          cancellationGracePeriodSeconds=10)
    api.create_deployment(ns, "stubborn", entrypoint=f"{CASES}:ignores_sigterm",
                          podTemplate=volume, cancellationGracePeriodSeconds=2)
    for run, deployment in (("oom", "hog"), ("sigkill", "killed"), ("broken", "broken"),
                            ("cancelled", "sleeper"), ("force-cancelled", "stubborn")):
        api.create_flowrun(ns, run, deploymentName=deployment)


@pytest.fixture
def explain(operator_proc):
    return lambda run: (lambda: operator_proc.log_tail(needle=f'"{run}"'))


@pytest.mark.parametrize("run,reason", [("oom", "OOMKilled"), ("sigkill", "Error")])
def test_a_hard_killed_run_runs_its_on_crashed_hook_once_in_a_hook_job(
        runs, api, flow_namespace, out, explain, run, reason):
    ns = flow_namespace
    flowrun = api.wait_final(ns, run, explain=explain(run))
    assert flowrun["status"]["state"]["type"] == "CRASHED", flowrun["status"]
    assert flowrun["status"]["reason"] == reason
    flowrun = wait_hooks_done(api, ns, run, explain(run))
    assert flowrun["status"]["hooks"] == {
        "declared": ["on_crashed"], "runner": "Job", "job": f"{run}-hooks",
        "outcome": "Succeeded", "message": "1 on_crashed hook(s) ran"}
    assert lines(out, run) == ["crashed Crashed"]  # the final state, exactly once
    (job,) = hook_jobs(api, ns, run)
    assert job["metadata"]["name"] == f"{run}-hooks"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    events = wait_events(api, ns, run, {"HookJobCreated", "HooksSucceeded"})
    assert {"HookJobCreated", "HooksSucceeded"} <= {e["reason"] for e in events}
    # The record is final now: the API server refuses a change to it.
    response = api.request("PATCH", contract.flowrun_path(ns, run, "status"),
                           {"status": {"hooks": {"outcome": "Failed"}}}, contract.MERGE_PATCH)
    assert response.status_code == 422, response.text


def test_a_hook_that_raises_is_recorded_failed_with_its_message(
        runs, api, flow_namespace, out, explain):
    ns = flow_namespace
    flowrun = wait_hooks_done(api, ns, "broken", explain("broken"))
    assert flowrun["status"]["state"]["type"] == "CRASHED"
    hooks = flowrun["status"]["hooks"]
    assert hooks["runner"] == "Job" and hooks["outcome"] == "Failed"
    assert hooks["message"] == ("on_crashed hook breaks raised RuntimeError: the hook broke "
                                "on purpose")
    assert lines(out, "broken") == ["after-the-broken-one Crashed"]  # the next one still ran
    events = wait_events(api, ns, "broken", {"HooksFailed"})
    (failed,) = [e for e in events if e["reason"] == "HooksFailed"]
    assert failed["type"] == "Warning" and "the hook broke on purpose" in failed["message"]


def test_a_cooperative_cancel_runs_on_cancellation_in_the_engine_and_no_hook_job(
        runs, api, flow_namespace, out, explain):
    ns = flow_namespace
    api.wait_flowrun(ns, "cancelled", lambda f: f["status"]["state"]["name"] == "Running",
                     what="Running", explain=explain("cancelled"))
    api.cancel(ns, "cancelled")
    flowrun = api.wait_final(ns, "cancelled", explain=explain("cancelled"))
    status = flowrun["status"]
    assert status["state"]["name"] == "Cancelled", status
    assert status["hooks"] == {"declared": ["on_crashed", "on_cancellation"],
                               "runner": "Engine", "outcome": "Succeeded",
                               "message": "1 on_cancellation hook(s) ran"}
    assert lines(out, "cancelled") == ["cancelled Cancelled"]
    time.sleep(2)  # give a wrong hook Job time to appear
    assert hook_jobs(api, ns, "cancelled") == []
    assert lines(out, "cancelled") == ["cancelled Cancelled"]


def test_a_cancel_that_ends_in_a_kill_runs_on_cancellation_in_a_hook_job(
        runs, api, flow_namespace, out, explain):
    ns, run = flow_namespace, "force-cancelled"
    api.wait_flowrun(ns, run, lambda f: f["status"]["state"]["name"] == "Running",
                     what="Running", explain=explain(run))
    api.cancel(ns, run)
    flowrun = api.wait_final(ns, run, explain=explain(run))
    assert flowrun["status"]["state"]["name"] == "Cancelled", flowrun["status"]
    flowrun = wait_hooks_done(api, ns, run, explain(run))
    assert flowrun["status"]["hooks"] == {
        "declared": ["on_cancellation"], "runner": "Job", "job": f"{run}-hooks",
        "outcome": "Succeeded", "message": "1 on_cancellation hook(s) ran"}
    assert lines(out, run) == ["cancelled Cancelled"]
    assert len(hook_jobs(api, ns, run)) == 1
