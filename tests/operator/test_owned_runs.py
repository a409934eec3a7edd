"""The decision to cancel the live children of a cancelled parent (flowpod_operator.
_decisions.owned, through decide), and the Index's lookup of a run's children."""

from __future__ import annotations

import pytest

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.deciding import decide
from flowpod_operator._runtime.indexing import Index


def _child(k8s, name: str, parent: dict, **kwargs) -> dict:
    child = k8s.flowrun(name, **kwargs)
    child["metadata"]["ownerReferences"] = [{
        "apiVersion": parent["apiVersion"], "kind": "FlowRun",
        "name": parent["metadata"]["name"], "uid": parent["metadata"]["uid"]}]
    return child


def _cancels(actions: list) -> list[str]:
    return [a.name for a in actions if isinstance(a, act.CancelFlowRun)]


@pytest.mark.parametrize("how", ["spec.cancel", "Cancelling", "Cancelled"])
def test_a_cancelled_parent_cancels_only_its_live_children(k8s, how):
    state = {"spec.cancel": k8s.state("RUNNING"), "Cancelling": k8s.state("CANCELLING"),
             "Cancelled": k8s.state("CANCELLED")}[how]
    parent = k8s.flowrun("parent", state=state, attempt=1, cancel=how == "spec.cancel")
    children = [
        _child(k8s, "running", parent, state=k8s.state("RUNNING"), attempt=1),
        _child(k8s, "new", parent),
        _child(k8s, "done", parent, state=k8s.state("COMPLETED")),
        _child(k8s, "asked", parent, state=k8s.state("RUNNING"), cancel=True),
    ]
    actions = decide(obs.Observation(parent, k8s.deployment(), owned_runs=children), k8s.now)
    assert _cancels(actions) == ["running", "new"]
    assert not isinstance(actions[0], act.WriteStatus)  # a status write stays last


def test_a_running_parent_leaves_its_children_alone(k8s):
    parent = k8s.flowrun("parent", state=k8s.state("RUNNING"), attempt=1)
    child = _child(k8s, "running", parent, state=k8s.state("RUNNING"), attempt=1)
    actions = decide(obs.Observation(parent, k8s.deployment(), owned_runs=[child]), k8s.now)
    assert _cancels(actions) == []


def test_the_index_gathers_owned_runs_only_while_the_parent_is_cancelled(k8s):
    index = Index()
    parent = k8s.flowrun("parent", state=k8s.state("RUNNING"), attempt=1)
    index.put_flowrun(parent)
    index.put_flowrun(_child(k8s, "mine", parent, state=k8s.state("RUNNING")))
    index.put_flowrun(k8s.flowrun("stranger", state=k8s.state("RUNNING")))
    assert index.observe(("ns", "parent")).owned_runs == ()
    cancelling = k8s.flowrun("parent", state=k8s.state("CANCELLING"), attempt=1)
    cancelling["metadata"]["resourceVersion"] = "101"
    index.put_flowrun(cancelling)
    owned = index.observe(("ns", "parent")).owned_runs
    assert [o["metadata"]["name"] for o in owned] == ["mine"]
