"""Runs a run started: cancelling a parent cancels the children it is waiting for.

Role: a flow that calls flowpod.run_deployment creates child FlowRuns owned by its own
FlowRun (an ownerReference; the garbage collector deletes them with it). When the parent
is being cancelled (spec.cancel, Cancelling) or is Cancelled, `cancellations` asks to set
spec.cancel on each owned child that is neither final nor already cancelled, so work
nobody waits for any more stops too; each child's own decision then cancels it as any
other run. Pure: it reads the Observation's `owned_runs`. Callers:
flowpod_operator._decisions.deciding.decide.
"""

from __future__ import annotations

from typing import Mapping

from flowpod import states

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.views import FlowRunView, Meta

__all__ = ["cancellations", "cancels_children", "owned_by"]

_FINAL = frozenset(t.value for t in states.TERMINAL_TYPES)
_CANCEL_STATES = frozenset({states.StateType.CANCELLING.value,
                            states.StateType.CANCELLED.value})


def cancels_children(flowrun: Mapping) -> bool:
    """Whether this run's live children should be cancelled (so worth looking up)."""
    return bool((flowrun.get("spec") or {}).get("cancel")) or (
        FlowRunView(flowrun).state_type in _CANCEL_STATES)


def owned_by(child: Mapping, parent: Mapping) -> bool:
    """Whether `child` names `parent` (by uid) among its ownerReferences."""
    uid = Meta(parent).uid
    return uid is not None and any(ref.get("uid") == uid
                                   for ref in Meta(child).owner_references)


def cancellations(o: obs.Observation) -> list[act.Action]:
    if not cancels_children(o.flowrun):
        return []
    out: list[act.Action] = []
    for child in o.owned_runs:
        view = FlowRunView(child)
        if view.state_type in _FINAL or (child.get("spec") or {}).get("cancel"):
            continue
        out.append(act.CancelFlowRun(Meta(child).name or "",
                                     f"its parent FlowRun {o.name} is cancelled"))
    return out
