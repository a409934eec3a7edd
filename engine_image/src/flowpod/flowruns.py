"""The one FlowRun status-patch builder, shared by both writers of `.status`.

Role: how a FlowRun's `.status` is written. Both writers use it: the operator
(flowpod_operator, for Scheduled/Pending/Crashed/Cancelled) and the in-pod Kubernetes
reporter (flowpod.engine._kubereporter, for Running/Completed/Failed/...). Names, bounds and
timestamp formats come from flowpod.contract; see ARCHITECTURE.md, "Who writes which state".

Everything here is a pure function of its arguments (the clock is the `now` argument), so
both writers can re-decide a patch after a 409 simply by calling it again on the fresh
status. Stdlib + flowpod.states/contract only: this module is imported inside every
flow-run pod.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterable, Mapping

from flowpod import contract, states


__all__ = [
    "COMPUTED_STATUS_FIELDS",
    "LOG_TAIL_TYPES",
    "human_duration",
    "state_to_wire",
    "state_from_wire",
    "current_state",
    "conditions_for",
    "status_patch",
    "patch_body",
]

# Keys status_patch computes itself; passing them as **fields would silently fight it.
COMPUTED_STATUS_FIELDS = frozenset(
    {"state", "stateHistory", "conditions", "observedGeneration", "startTime", "endTime",
     "duration", "logTail"}
)
# The final states whose status keeps the last lines of the flow's output: the pod that
# logged them is deleted, and these are the runs someone will want to debug.
LOG_TAIL_TYPES = frozenset(
    {states.StateType.FAILED, states.StateType.CRASHED, states.StateType.CANCELLED})

# metav1.Condition.reason must match this; state names normally do, foreign ones are cleaned.
_REASON_OK = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_REASON_BAD_CHARS = re.compile(r"[^A-Za-z0-9_,:]")


def state_to_wire(state: states.State) -> dict[str, str]:
    """The `status.state` form {type, name, message, timestamp}; long messages are truncated."""
    wire = state.to_wire()
    wire["message"] = contract.truncate_message(wire["message"])
    assert state.timestamp is not None  # State.__post_init__ always sets it
    wire["timestamp"] = contract.format_time(state.timestamp)
    return wire


def state_from_wire(wire: Mapping[str, Any]) -> states.State:
    """Parse `status.state` (or a stateHistory entry); a bad field raises ValueError naming it."""
    return states.State.from_wire(wire)


def current_state(flowrun: Mapping[str, Any]) -> states.State | None:
    """The state of a FlowRun object (as read from the API), or None before the first write."""
    wire = (flowrun.get("status") or {}).get("state")
    return state_from_wire(wire) if wire else None


def _condition_reason(state: states.State) -> str:
    if _REASON_OK.match(state.name):
        return state.name
    cleaned = _REASON_BAD_CHARS.sub("", state.name).lstrip("0123456789_,:").rstrip(",:")
    return cleaned if _REASON_OK.match(cleaned or "") else state.type.value.title()


def _desired_conditions(state: states.State) -> dict[str, str]:
    """type -> status of our two conditions: Succeeded follows the outcome (Unknown until a
    final state), Ready is True only once Completed (what kstatus and `kubectl wait` read)."""
    kind = state.type
    if kind is states.StateType.COMPLETED:
        succeeded = "True"
    elif kind in states.TERMINAL_TYPES:
        succeeded = "False"
    else:
        succeeded = "Unknown"
    ready = "True" if kind is states.StateType.COMPLETED else "False"
    return {contract.CONDITION_SUCCEEDED: succeeded, contract.CONDITION_READY: ready}


def conditions_for(
    previous: list[Mapping[str, Any]] | None,
    state: states.State,
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The full `status.conditions` list after moving to `state`.

    A JSON merge patch replaces lists whole, so foreign condition types are carried over
    unchanged. lastTransitionTime is kept unless the condition's status flips, which is the
    metav1.Condition rule kstatus and `kubectl wait` rely on.
    """
    by_type = {c.get("type"): c for c in previous or ()}
    reason = _condition_reason(state)
    message = contract.truncate_message(state.message)
    ours: list[dict[str, Any]] = []
    for cond_type, cond_status in _desired_conditions(state).items():
        old = by_type.get(cond_type)
        unchanged = old is not None and old.get("status") == cond_status
        ltt = old.get("lastTransitionTime") if unchanged else None
        ours.append({
            "type": cond_type,
            "status": cond_status,
            "observedGeneration": generation,
            "lastTransitionTime": ltt or contract.format_time(now, fraction=False),
            "reason": reason,
            "message": message,
        })
    foreign = [dict(c) for c in previous or () if c.get("type") not in _desired_conditions(state)]
    return ours + foreign


def _history(status: Mapping[str, Any], new_wire: dict[str, str]) -> list[dict[str, Any]]:
    history = [dict(entry) for entry in status.get("stateHistory") or ()]
    if not history and status.get("state"):
        # A status written without history (older writer, hand edit): keep what we know.
        history = [dict(status["state"])]
    history.append(new_wire)
    return history[-contract.MAX_STATE_HISTORY:]


def human_duration(seconds: float) -> str:
    """Like kubectl's ages: 17ms, 4.2s, 3m05s, 2h01m, 3d4h. Used for the DURATION printer
    column (JSONPath cannot subtract) and by the CLI's tables."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        # Trivial flows finish in milliseconds; "0.0s" would read as "never ran".
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def status_patch(
    status: Mapping[str, Any] | None,
    state: states.State,
    *,
    generation: int,
    now: datetime,
    log_tail: Iterable[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON merge patch for `.status` that moves a FlowRun (current `status`) to `state`.

    Sets state, the appended and bounded stateHistory, conditions, observedGeneration,
    startTime on the first RUNNING, endTime (and duration) on a terminal state, logTail
    (the last lines of `log_tail`, bounded by contract.log_tail) when `state` is one of
    LOG_TAIL_TYPES -- in the same patch, so the record is whole the moment the run is
    final -- plus **fields verbatim (camelCase wire keys, e.g. jobName=..., exitCode=...;
    None deletes the key, as merge patch does). Does not check the transition: callers decide with
    states.is_transition_allowed, and the API server's CEL rule is the backstop.
    """
    clash = COMPUTED_STATUS_FIELDS.intersection(fields)
    if clash:
        raise ValueError(f"status_patch computes {sorted(clash)} itself; do not pass them as fields")
    status = status or {}
    new_wire = state_to_wire(state)
    patch: dict[str, Any] = {
        "state": new_wire,
        "stateHistory": _history(status, new_wire),
        "conditions": conditions_for(status.get("conditions"), state,
                                     generation=generation, now=now),
        "observedGeneration": generation,
    }
    start_text = status.get("startTime")
    if state.type is states.StateType.RUNNING and not start_text:
        start_text = patch["startTime"] = contract.format_time(now)
    if state.type in states.TERMINAL_TYPES and not status.get("endTime"):
        patch["endTime"] = contract.format_time(now)
        if start_text:
            elapsed = now - contract.parse_time(start_text)
            patch["duration"] = human_duration(elapsed.total_seconds())
    if log_tail is not None and state.type in LOG_TAIL_TYPES:
        tail = contract.log_tail(log_tail)
        if tail:
            patch["logTail"] = tail
    patch.update(fields)
    return patch


def patch_body(resource_version: str | None, status: Mapping[str, Any]) -> dict[str, Any]:
    """The request body for PATCH .../status: the resourceVersion precondition makes a
    concurrent write fail with 409 instead of being overwritten."""
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return body

