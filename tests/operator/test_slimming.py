"""What the Index keeps of a final run (flowpod_operator._runtime.slimming) decides exactly as
the whole body does: every decision about a final run, its Events, its metrics and the
history limits see the same answers. The full bodies here carry everything a real final run
has (result, log tail, task-run summary, a long state history, conditions, managedFields),
so a reader of any of it would show up as a different decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowpod import contract
from flowpod_operator._decisions import deciding
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.runs import Policy
from flowpod_operator._runtime.eventing import new_transitions
from flowpod_operator._runtime.history import History
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.metrics import _last_marker
from flowpod_operator._runtime.slimming import slim_flowrun, without_managed_fields

MANAGED = [{"manager": "flowpod-operator", "operation": "Update", "fieldsV1": {"f:status": {
    "f:state": {}, "f:stateHistory": {}, "f:conditions": {}}}}]


def heavy(k8s, body):
    """`body` with everything a real final run carries besides what decisions read."""
    status = body.setdefault("status", {})
    final = status.get("state")
    status["stateHistory"] = [k8s.state("SCHEDULED", offset=-30),
                              k8s.state("PENDING", offset=-29),
                              k8s.state("RUNNING", offset=-20)] + ([final] if final else [])
    status.update(
        result={"value": {"rows": list(range(200))}, "serializer": "json"},
        logTail=[{"stream": "stdout", "line": f"line {n}"} for n in range(50)],
        taskRuns={"total": 3, "completed": 3}, flowRunName="brave-otter", duration="20s",
        conditions=[{"type": "Ready", "status": "True", "reason": "Completed"}],
        pause={"key": "k"}, resumed={"key": "k", "generation": 2})
    body["metadata"]["managedFields"] = MANAGED
    body["metadata"]["annotations"] = {"note": "kept"}
    return body


def crashed(k8s, **extra):
    return k8s.flowrun(state=k8s.state("CRASHED", message="OOMKilled"), attempt=1,
                       exitCode=137, reason="OOMKilled", podName="run-1-abcde",
                       endTime=k8s.ts(-1), startTime=k8s.ts(-20), **extra)


def _scenarios(k8s):
    """(name, flowrun, observation extras, policy, now) of final runs in every situation a
    final run's decision knows."""
    later = k8s.now + timedelta(hours=2)
    completed = k8s.flowrun(state=k8s.state("COMPLETED"), attempt=1, podName="run-1-abcde",
                            endTime=k8s.ts(-1))
    cancelled_parent = k8s.flowrun("parent", cancel=True, state=k8s.state("CANCELLED"),
                                   attempt=1, endTime=k8s.ts(-1))
    child = k8s.flowrun("child", state=k8s.state("RUNNING"), attempt=1)
    child["metadata"]["ownerReferences"] = [{"kind": contract.KIND_FLOW_RUN, "name": "parent",
                                             "uid": "uid-parent", "controller": True}]
    with_ttl = k8s.flowrun(state=k8s.state("FAILED"), attempt=1, endTime=k8s.ts(-30))
    with_ttl["spec"]["ttlSecondsAfterFinished"] = 60
    return [
        ("a live pod outlives the run", completed,
         lambda run: {"jobs": [k8s.job(run)], "pods": [k8s.pod(run)]}, Policy(), k8s.now),
        ("the pod's end is recorded", completed,
         lambda run: {"jobs": [k8s.job(run)], "pods": [k8s.pod(run, exit_code=0)]},
         Policy(), k8s.now),
        ("a recorded end is not written again", k8s.flowrun(
            state=k8s.state("COMPLETED"), attempt=1, podName="run-1-abcde", exitCode=0,
            reason="Completed", endTime=k8s.ts(-1)),
         lambda run: {"jobs": [k8s.job(run)], "pods": [k8s.pod(run, exit_code=0)]},
         Policy(ttl_seconds_after_finished=3600), k8s.now),
        ("a stuck terminating pod is forced", completed,
         lambda run: {"jobs": [k8s.job(run)], "pods": [k8s.pod(run, deleting=-3600)]},
         Policy(), k8s.now),
        ("the TTL has not expired", with_ttl, lambda run: {}, Policy(), k8s.now),
        ("the TTL expired", with_ttl, lambda run: {}, Policy(), later),
        ("the operator's default TTL", completed, lambda run: {},
         Policy(ttl_seconds_after_finished=0), k8s.now),
        ("beyond the history limits", completed,
         lambda run: {"beyond_history": "beyond the Deployment's limit"}, Policy(), k8s.now),
        ("hooks after a hard kill are claimed", crashed(k8s, hooks={"declared": ["on_crashed"]}),
         lambda run: {"jobs": [k8s.job(run)], "pods": [k8s.pod(run, exit_code=137)]},
         Policy(), k8s.now),
        ("the claimed hook Job is created", crashed(k8s, hooks={
            "declared": ["on_crashed"], "runner": "Job", "job": "run-hooks",
            "outcome": "Pending"}),
         lambda run: {"jobs": [k8s.job(run)], "fresh": True}, Policy(), k8s.now),
        ("a deadline is recorded over the engine's reason", k8s.flowrun(
            state=k8s.state("CRASHED"), attempt=1, podName="run-1-abcde", exitCode=143,
            reason="Error"),
         lambda run: {"jobs": [k8s.job(run, conditions=[{"type": "Failed",
                                                         "reason": "DeadlineExceeded"}])],
                      "pods": [k8s.pod(run, exit_code=143)]}, Policy(), k8s.now),
        ("a cancelled parent cancels its live child", cancelled_parent,
         lambda run: {"owned_runs": (child,)}, Policy(), k8s.now),
        ("an unlabelled final run gets its label", k8s.flowrun(
            deployment="hello", state=k8s.state("COMPLETED"), attempt=1, endTime=k8s.ts(-1)),
         lambda run: {}, Policy(), k8s.now),
    ]


def _observe(k8s, run, extras):
    parts = extras(run)
    return obs.Observation(run, k8s.deployment(), jobs=parts.get("jobs", ()),
                           pods=parts.get("pods", ()), fresh=parts.get("fresh", False),
                           owned_runs=parts.get("owned_runs", ()),
                           beyond_history=parts.get("beyond_history"))


def test_a_slim_final_run_gets_the_same_decision_as_the_whole_body(k8s):
    for name, run, extras, policy, now in _scenarios(k8s):
        if name.startswith("an unlabelled"):
            del run["metadata"]["labels"]
        full = heavy(k8s, run)
        slim = slim_flowrun(full)
        assert "result" not in slim["status"] and "managedFields" not in slim["metadata"]
        whole = deciding.decide(_observe(k8s, full, extras), now, policy)
        assert whole, name  # each scenario asks for something, so it can differ
        assert deciding.decide(_observe(k8s, slim, extras), now, policy) == whole, name


def test_the_slim_form_keeps_what_is_read_and_drops_the_record(k8s):
    full = heavy(k8s, crashed(k8s, hooks={"declared": ["on_crashed"]}))
    slim = slim_flowrun(full)
    assert slim["spec"] == full["spec"]
    assert slim["metadata"] == {k: v for k, v in full["metadata"].items()
                                if k != "managedFields"}
    assert set(slim["status"]) == {"state", "stateHistory", "attempt", "jobName", "podName",
                                   "exitCode", "reason", "startTime", "endTime", "hooks"}
    assert slim["status"]["stateHistory"] == [full["status"]["state"]]
    assert slim["apiVersion"] == full["apiVersion"] and slim["kind"] == full["kind"]


def test_a_run_that_is_not_final_is_kept_whole_but_for_managed_fields(k8s):
    running = heavy(k8s, k8s.flowrun(state=k8s.state("RUNNING"), attempt=1))
    kept = slim_flowrun(running)
    assert kept["status"] == running["status"]
    assert "managedFields" not in kept["metadata"] and "managedFields" in running["metadata"]
    assert without_managed_fields(kept) is kept  # nothing left to drop: no copy


def test_events_and_metrics_compare_with_the_slim_form_as_with_the_whole_body(k8s):
    before = heavy(k8s, crashed(k8s))
    after = heavy(k8s, crashed(k8s, hooks={"declared": ["on_crashed"]}))
    after["metadata"]["resourceVersion"] = "101"
    slim = slim_flowrun(before)
    assert _last_marker(slim) == _last_marker(before)
    assert new_transitions(_last_marker(slim), after) == \
        new_transitions(_last_marker(before), after) == []


@pytest.mark.parametrize("failed_limit", [0, 1, 5])
def test_history_limits_rank_slim_runs_as_whole_ones(k8s, failed_limit):
    def final(n):
        return heavy(k8s, k8s.flowrun(f"r{n}", state=k8s.state("FAILED", offset=-n),
                                      attempt=1, endTime=k8s.ts(-n)))

    slim_index, whole = Index(), [final(n) for n in range(1, 5)]
    dep = k8s.deployment()
    dep["spec"]["failedRunsHistoryLimit"] = failed_limit
    slim_index.put_deployment(dep)
    for body in whole:
        slim_index.put_flowrun(body)
    history = History(slim_index)
    from flowpod_operator._decisions import cleanup
    expected = cleanup.beyond_history(whole, 10, failed_limit)
    assert {key: history.note(slim_index.flowrun(key)) for key in slim_index.keys()} == {
        ("ns", f"r{n}"): expected.get(("ns", f"r{n}")) for n in range(1, 5)}
