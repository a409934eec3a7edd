"""Clean-up of finished runs: the pure selection (flowpod_operator._decisions.cleanup) and
the deletion a final run's decision asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import cleanup, deciding
from flowpod_operator._decisions import observations as obs


def _final(k8s, name, kind, ended, *, ttl=None, dep="hello"):
    body = k8s.flowrun(name, deployment=dep, state=k8s.state(kind, offset=ended), attempt=1,
                       endTime=k8s.ts(ended))
    if ttl is not None:
        body["spec"]["ttlSecondsAfterFinished"] = ttl
    return body


def test_history_keeps_the_newest_of_each_kind(k8s):
    runs = [_final(k8s, f"ok-{n}", "COMPLETED", -n) for n in range(1, 5)]
    runs += [_final(k8s, f"bad-{n}", kind, -n) for n, kind in
             enumerate(("FAILED", "CRASHED", "CANCELLED"), start=1)]
    runs.append(k8s.flowrun("running", state=k8s.state("RUNNING"), attempt=1))
    runs.append(k8s.flowrun("waiting"))
    out = cleanup.beyond_history(runs, 2, 1)
    assert out == {("ns", "ok-3"): "beyond the Deployment's successfulRunsHistoryLimit of 2",
                   ("ns", "ok-4"): "beyond the Deployment's successfulRunsHistoryLimit of 2",
                   ("ns", "bad-2"): "beyond the Deployment's failedRunsHistoryLimit of 1",
                   ("ns", "bad-3"): "beyond the Deployment's failedRunsHistoryLimit of 1"}
    assert set(cleanup.beyond_history(runs, 0, 0)) == {
        ("ns", n) for n in ("ok-1", "ok-2", "ok-3", "ok-4", "bad-1", "bad-2", "bad-3")}


def test_history_never_deletes_a_run_another_run_started(k8s):
    runs = [_final(k8s, f"child-{n}", "COMPLETED", -n) for n in range(1, 4)]
    for child in runs[:2]:
        child["metadata"]["ownerReferences"] = [{"apiVersion": "flowpod.io/v1alpha1",
                                                 "kind": "FlowRun", "name": "p",
                                                 "uid": "uid-p"}]
    # Its parent may still read it (or re-attach to it); it goes when the parent goes.
    assert cleanup.beyond_history(runs, 0, 0) == {
        ("ns", "child-3"): "beyond the Deployment's successfulRunsHistoryLimit of 0"}


def test_history_limits_default_to_the_crds(k8s):
    assert cleanup.history_limits(None) == (10, 5)
    assert cleanup.history_limits({"spec": {"successfulRunsHistoryLimit": 0,
                                            "failedRunsHistoryLimit": 2}}) == (0, 2)


@pytest.mark.parametrize("run_ttl,deployment_ttl,default,expected", [
    (30, 60, 90, 30), (None, 60, 90, 60), (None, None, 90, 90), (None, None, None, None),
    (0, None, None, 0)])
def test_ttl_comes_from_the_run_then_the_deployment_then_the_operator(
        k8s, run_ttl, deployment_ttl, default, expected):
    run = _final(k8s, "r", "COMPLETED", -10, ttl=run_ttl)
    dep = k8s.deployment()
    if deployment_ttl is not None:
        dep["spec"]["ttlSecondsAfterFinished"] = deployment_ttl
    got = cleanup.expires_at(run, dep, default)
    if expected is None:
        assert got is None
    else:
        assert got == (k8s.now - timedelta(seconds=10) + timedelta(seconds=expected), expected)


def test_ttl_never_applies_to_an_unfinished_run(k8s):
    running = k8s.flowrun("r", state=k8s.state("RUNNING"), attempt=1, endTime=k8s.ts(-100))
    running["spec"]["ttlSecondsAfterFinished"] = 0
    assert cleanup.expires_at(running, None, 0) is None


def _decide(k8s, flowrun, *, ttl=None, beyond=None):
    o = obs.Observation(flowrun=flowrun, deployment=k8s.deployment(), beyond_history=beyond,
                        deployment_fresh=True)
    return deciding.decide(o, k8s.now, deciding.Policy(ttl_seconds_after_finished=ttl))


def test_a_final_run_is_deleted_once_its_ttl_expired(k8s):
    run = _final(k8s, "r", "COMPLETED", -10)
    assert _decide(k8s, run, ttl=10) == [
        act.DeleteFlowRun("uid-r", "ttlSecondsAfterFinished of 10 expired")]
    assert _decide(k8s, run, ttl=25) == [act.Requeue(15.0)]
    assert _decide(k8s, run) == []


def test_a_final_run_past_the_history_is_deleted(k8s):
    run = _final(k8s, "r", "FAILED", -10)
    why = "beyond the Deployment's failedRunsHistoryLimit of 5"
    assert _decide(k8s, run, beyond=why) == [act.DeleteFlowRun("uid-r", why)]


def test_an_unfinished_run_is_never_deleted(k8s):
    for state in ("RUNNING", "PENDING", "CANCELLING", "PAUSED"):
        run = k8s.flowrun("r", state=k8s.state(state), attempt=1, endTime=k8s.ts(-100))
        run["spec"]["ttlSecondsAfterFinished"] = 0
        actions = _decide(k8s, run, ttl=0, beyond="beyond")
        assert not any(isinstance(a, act.DeleteFlowRun) for a in actions), state
