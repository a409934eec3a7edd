"""What the Index keeps of an object: everything it reads, not the whole body.

Role: an operator that knows many FlowRuns is mostly a heap of final runs, and a final
run's body is mostly its record for people (the result, the log tail, the task-run summary,
the whole state history, the conditions), which no decision about it reads again.
`slim_flowrun` keeps of a final run what every reader of the Index needs: metadata without
managedFields (key, uid, resourceVersion for write preconditions, generation, labels for
history and schedules, annotations, ownerReferences for owned runs, timestamps), the whole
spec (the hook Job after a hard kill is built from it), and the status fields the decisions
read (state, attempt, job and pod names, exit code and reason, start and end times, the
hook record, observedGeneration) plus the last stateHistory entry, which is the marker
Events and metrics compare the next body with. A run that is not final is kept whole but
without managedFields; so are Jobs, Pods and Deployments (`without_managed_fields`).

Strings that repeat in every body (keys, namespaces, state names, label keys) are interned,
so 10,000 runs share one copy of each. Callers: flowpod_operator._runtime.indexing.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from flowpod import states

__all__ = ["slim_flowrun", "without_managed_fields", "KEPT_FINAL_STATUS"]

_FINAL = frozenset(t.value for t in states.TERMINAL_TYPES)
# The status fields a final run's decision, its Events and metrics read (see the module
# docstring); stateHistory is kept as its last entry.
KEPT_FINAL_STATUS = ("state", "attempt", "jobName", "podName", "exitCode", "reason",
                     "startTime", "endTime", "hooks", "observedGeneration")
_MANAGED = "managedFields"


def _interned(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def _interned_map(mapping: Any) -> Any:
    if not isinstance(mapping, dict):
        return mapping
    return {sys.intern(k): _interned(v) for k, v in mapping.items()}


def _metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in meta.items():
        if name == _MANAGED:
            continue
        if name in ("labels", "annotations"):
            value = _interned_map(value)
        elif name in ("namespace", "creationTimestamp"):
            value = _interned(value)
        out[sys.intern(name)] = value
    return out


def without_managed_fields(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The body without metadata.managedFields (the server-side apply record, often the
    largest part of a small object, and never read by the operator)."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or _MANAGED not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != _MANAGED}}


def slim_flowrun(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A final run reduced to what is read of it; any other run without managedFields."""
    status = body.get("status")
    if not isinstance(status, dict) or (status.get("state") or {}).get("type") not in _FINAL:
        return without_managed_fields(body)
    kept: dict[str, Any] = {}
    for name in KEPT_FINAL_STATUS:
        if name in status:
            value = status[name]
            kept[name] = _interned_map(value) if name == "state" else value
    history = status.get("stateHistory")
    if history:
        # The last entry is the state itself on every run that reached it normally: one dict.
        last = history[-1]
        kept["stateHistory"] = [kept["state"] if last == status.get("state")
                                else _interned_map(last)]
    out: dict[str, Any] = {sys.intern(k): _interned(v) for k, v in body.items()
                           if k not in ("metadata", "status")}
    out["metadata"] = _metadata(body.get("metadata") or {})
    out["status"] = kept
    return out
