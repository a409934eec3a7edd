"""The actions the decision function asks for, and the status patch a state write becomes.

Role: plain data returned by flowpod_operator._decisions.deciding.decide and carried out
by flowpod_operator._runtime.actuator against the API server. Tests compare these values directly.
`status_patch_for` turns a WriteStatus into the JSON merge patch for `.status`, through the
shared builder flowpod.flowruns.status_patch (one implementation with the in-pod reporter).

Conventions the decision function keeps: at most one WriteStatus per decision, and it comes
last, because a refused write (409) means the world changed and everything is re-decided;
only a LabelFlowRun may follow it (a label patch has no precondition, so it cannot be
refused for a stale view, and coming last it never makes the status write stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from flowpod import flowruns, states

__all__ = [
    "Action",
    "CreateJob",
    "DeleteJob",
    "DeletePod",
    "DeleteFlowRun",
    "CancelFlowRun",
    "WriteStatus",
    "LabelFlowRun",
    "Refresh",
    "Requeue",
    "status_patch_for",
]


@dataclass(frozen=True)
class CreateJob:
    """Create this Job (its name is deterministic; AlreadyExists means it is there)."""

    manifest: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


@dataclass(frozen=True)
class DeleteJob:
    """Delete a Job and, in the background, its pods (so it can never start one)."""

    name: str


@dataclass(frozen=True)
class DeleteFlowRun:
    """Delete this final FlowRun (its Jobs and pods follow through ownerReferences); only
    the object with `uid`, never a new run that took its name. `reason` is for the log."""

    uid: str | None
    reason: str


@dataclass(frozen=True)
class CancelFlowRun:
    """Set spec.cancel on another FlowRun of the namespace (a child of this run that is
    still going); one already ended or gone is left as it is. `reason` is for the log."""

    name: str
    reason: str


@dataclass(frozen=True)
class DeletePod:
    """Delete a pod, giving its process `grace_seconds` between SIGTERM and SIGKILL."""

    name: str
    grace_seconds: int


@dataclass(frozen=True)
class WriteStatus:
    """Write `states` in order (each appended to stateHistory) plus `fields`, in one patch.

    With no states only `fields` are written (e.g. podName), and state is left untouched,
    which the CRD's transition rule always allows. A field value of None removes the field.
    """

    states: tuple[states.State, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    # A pod whose last log lines go into status.logTail with a final state (its log is
    # deleted with it); read by the actuator just before the write, skipped if unreadable.
    log_tail_of: str | None = None
    # An Event posted once the write lands, (type, reason, message), for an answer that is
    # no state transition (e.g. a refused resume); transitions post their own Events.
    event: tuple[str, str, str] | None = None

    @property
    def final_state(self) -> states.State | None:
        return self.states[-1] if self.states else None


@dataclass(frozen=True)
class LabelFlowRun:
    """Add these labels to the FlowRun's metadata (a merge patch; other labels stay)."""

    labels: Mapping[str, str]


@dataclass(frozen=True)
class Refresh:
    """Read from the API instead of the watch cache before deciding: the Deployment, or
    the run's Jobs and Pods (asked only when the absence of an object would decide), or the
    Events of the Job named `job_events` (asked when that Job has made no pod for a while)."""

    deployment: bool = False
    children: bool = False
    job_events: str | None = None


@dataclass(frozen=True)
class Requeue:
    """Decide again after `after` seconds even if nothing is observed to change."""

    after: float


Action = (CreateJob | DeleteJob | DeletePod | DeleteFlowRun | CancelFlowRun | WriteStatus
          | LabelFlowRun | Refresh | Requeue)


def _merged(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(status)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def status_patch_for(write: WriteStatus, status: Mapping[str, Any] | None, *,
                     generation: int, now: datetime,
                     log_tail: Iterable[str] | None = None) -> dict[str, Any]:
    """The merge patch for `.status` that performs `write` on a FlowRun whose status is
    `status`. Several states are folded into one patch, each seeing the previous one, so
    the history shows e.g. Scheduled then Pending while the API sees a single write.
    `log_tail` (the lines read from `write.log_tail_of`) goes with a final state."""
    current: dict[str, Any] = dict(status or {})
    patch: dict[str, Any] = {}
    for state in write.states:
        step = flowruns.status_patch(current, state, generation=generation, now=now,
                                     log_tail=log_tail)
        patch.update(step)
        current = _merged(current, step)
    patch.update(write.fields)
    return patch
