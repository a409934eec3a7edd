"""The FlowRun wire contract: names, env vars, and the one status-patch builder.

Role: the single implementation of how a FlowRun's `.status` is written. Both writers use
it: the operator (flowpod_operator, for Scheduled/Pending/Crashed/Cancelled) and the in-pod
Kubernetes reporter (flowpod._kube_reporting, for Running/Completed/Failed/...). The CRD
generator (flowpod_operator.crdgen) imports the constants and bounds from here, so the
schema and the writer cannot disagree.

Everything here is a pure function of its arguments (the clock is the `now` argument), so
both writers can re-decide a patch after a 409 simply by calling it again on the fresh
status. Stdlib + flowpod.states only: this module is imported inside every flow-run pod.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping

from flowpod import states

__all__ = [
    "GROUP",
    "VERSION",
    "API_VERSION",
    "FLOWRUNS",
    "DEPLOYMENTS",
    "KIND_FLOW_RUN",
    "KIND_DEPLOYMENT",
    "LABEL_FLOW_RUN",
    "LABEL_DEPLOYMENT",
    "ENV_FLOW_RUN_NAME",
    "ENV_FLOW_RUN_NAMESPACE",
    "ENV_ENTRYPOINT",
    "ENV_PARAMETERS",
    "ENV_ATTEMPT",
    "MAX_STATE_HISTORY",
    "MAX_MESSAGE_LENGTH",
    "MAX_LISTED_RUNS",
    "MAX_INLINE_RESULT_BYTES",
    "CONDITION_SUCCEEDED",
    "CONDITION_READY",
    "COMPUTED_STATUS_FIELDS",
    "MERGE_PATCH",
    "format_time",
    "human_duration",
    "state_to_wire",
    "state_from_wire",
    "current_state",
    "conditions_for",
    "status_patch",
    "patch_body",
    "flowrun_path",
]

GROUP = "flowpod.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FLOWRUNS = "flowruns"
DEPLOYMENTS = "deployments"
KIND_FLOW_RUN = "FlowRun"
KIND_DEPLOYMENT = "Deployment"

LABEL_FLOW_RUN = "flowpod.io/flow-run"
LABEL_DEPLOYMENT = "flowpod.io/deployment"

ENV_FLOW_RUN_NAME = "FLOWPOD_FLOW_RUN_NAME"
ENV_FLOW_RUN_NAMESPACE = "FLOWPOD_FLOW_RUN_NAMESPACE"
ENV_ENTRYPOINT = "FLOWPOD_ENTRYPOINT"
ENV_PARAMETERS = "FLOWPOD_PARAMETERS"
ENV_ATTEMPT = "FLOWPOD_ATTEMPT"

# The CRD schema uses the same bounds (maxItems / maxLength), so a patch built here always
# validates. Bounded strings also keep the CEL cost estimate of the state rules small.
MAX_STATE_HISTORY = 20
MAX_MESSAGE_LENGTH = 4096
MAX_LISTED_RUNS = 50  # failed task runs / subflow runs listed in status.taskRuns
# Larger results are stored elsewhere and referenced: the FlowRun must stay far below
# etcd's 1.5 MiB object limit, and `kubectl get -o yaml` readable.
MAX_INLINE_RESULT_BYTES = 4096

CONDITION_SUCCEEDED = "Succeeded"
CONDITION_READY = "Ready"

# Keys status_patch computes itself; passing them as **fields would silently fight it.
COMPUTED_STATUS_FIELDS = frozenset(
    {"state", "stateHistory", "conditions", "observedGeneration", "startTime", "endTime",
     "duration"}
)

MERGE_PATCH = "application/merge-patch+json"

_TRUNCATED = "… (truncated)"
# metav1.Condition.reason must match this; state names normally do, foreign ones are cleaned.
_REASON_OK = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_REASON_BAD_CHARS = re.compile(r"[^A-Za-z0-9_,:]")


def format_time(moment: datetime, *, fraction: bool = True) -> str:
    """RFC 3339 in UTC with a `Z` suffix; `fraction=False` gives metav1.Time's whole seconds."""
    if moment.tzinfo is None:
        raise ValueError(f"time must be timezone-aware (UTC), got naive {moment!r}")
    moment = moment.astimezone(timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if fraction else "seconds")
    return text.replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - len(_TRUNCATED)] + _TRUNCATED


def state_to_wire(state: states.State) -> dict[str, str]:
    """The `status.state` form {type, name, message, timestamp}; long messages are truncated."""
    wire = state.to_wire()
    wire["message"] = _truncate(wire["message"])
    assert state.timestamp is not None  # State.__post_init__ always sets it
    wire["timestamp"] = format_time(state.timestamp)
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
    """type -> status of our two conditions, per the contract in DESIGN.md."""
    kind = state.type
    if kind is states.StateType.COMPLETED:
        succeeded = "True"
    elif kind in states.TERMINAL_TYPES:
        succeeded = "False"
    else:
        succeeded = "Unknown"
    ready = "True" if kind is states.StateType.COMPLETED else "False"
    return {CONDITION_SUCCEEDED: succeeded, CONDITION_READY: ready}


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
    message = _truncate(state.message)
    ours: list[dict[str, Any]] = []
    for cond_type, cond_status in _desired_conditions(state).items():
        old = by_type.get(cond_type)
        unchanged = old is not None and old.get("status") == cond_status
        ltt = old.get("lastTransitionTime") if unchanged else None
        ours.append({
            "type": cond_type,
            "status": cond_status,
            "observedGeneration": generation,
            "lastTransitionTime": ltt or format_time(now, fraction=False),
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
    return history[-MAX_STATE_HISTORY:]


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
    **fields: Any,
) -> dict[str, Any]:
    """The JSON merge patch for `.status` that moves a FlowRun (current `status`) to `state`.

    Sets state, the appended and bounded stateHistory, conditions, observedGeneration,
    startTime on the first RUNNING, endTime (and duration) on a terminal state, plus
    **fields verbatim (camelCase wire keys, e.g. jobName=..., exitCode=...; None deletes the
    key, as merge patch does). Does not check the transition: callers decide with
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
        start_text = patch["startTime"] = format_time(now)
    if state.type in states.TERMINAL_TYPES and not status.get("endTime"):
        patch["endTime"] = format_time(now)
        if start_text:
            patch["duration"] = human_duration((now - _parse_time(start_text)).total_seconds())
    patch.update(fields)
    return patch


def patch_body(resource_version: str | None, status: Mapping[str, Any]) -> dict[str, Any]:
    """The request body for PATCH .../status: the resourceVersion precondition makes a
    concurrent write fail with 409 instead of being overwritten."""
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return body


def flowrun_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """The API path of the FlowRun collection, one FlowRun, or its subresource ("status")."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{FLOWRUNS}"
    if name is not None:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    elif subresource:
        raise ValueError("flowrun_path: a subresource needs a FlowRun name")
    return path
