"""A run whose Job waits for a batch queue (Kueue, by convention) to admit it.

Role: pure readers of a queued Job and the Pending messages of its wait. A run with a
`queueName` gets a Job labelled `kueue.x-k8s.io/queue-name` and created with
`spec.suspend: true` (flowpod_operator._decisions.manifests); the queue admits it by setting
`spec.suspend: false`, and preempts it by setting it back to true, whereupon the Job
controller deletes the Job's pods. A suspended Job with that label is therefore a run
waiting, never a crash, and its pods going away are the preemption's doing. (A Job someone
else suspends, without the label, keeps counting against pendingTimeoutSeconds.) Callers:
flowpod_operator._decisions.diagnosing (a suspended attempt) and .deciding (the message
written when the Job is created).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from flowpod import contract

from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.views import Meta

__all__ = ["queue_of", "is_suspended", "waiting_message", "admission_deadline",
           "timeout_message", "pending_since", "this_admission"]


def queue_of(job: Mapping[str, Any]) -> str | None:
    """The queue a Job waits for (its Kueue label), or None."""
    return Meta(job).labels.get(contract.LABEL_KUEUE_QUEUE_NAME) or None


def is_suspended(job: Mapping[str, Any] | None) -> bool:
    return bool(job is not None and (job.get("spec") or {}).get("suspend"))


def waiting_message(job: Mapping[str, Any], preempted_pod: str | None = None) -> str:
    """The Pending message of a run whose Job is suspended: the exact text users wait on.
    `preempted_pod` names the pod the suspension stopped, when the Job had been admitted."""
    head = f"waiting for admission by queue {queue_of(job)}"
    if preempted_pod is None:
        return head
    return (f"{head} (preempted: pod {preempted_pod} was stopped; the run goes on in a new pod "
            f"of Job {Meta(job).name} when admitted again)")


def _created(job: Mapping[str, Any]) -> datetime | None:
    return obs.parse_time((job.get("metadata") or {}).get("creationTimestamp"))


def _suspension(job: Mapping[str, Any], status: str | None = None) -> datetime | None:
    """When the Job's Suspended condition last changed (to `status`, when given: True is
    suspended, False resumed), or None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Suspended" and status in (None, cond.get("status")):
            return obs.parse_time(cond.get("lastTransitionTime"))
    return None


def _suspended_at(job: Mapping[str, Any]) -> datetime | None:
    return _suspension(job, "True")


def this_admission(job: Mapping[str, Any] | None,
                   pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods of a queued Job's current admission. A pod created before the Job was last
    suspended or resumed belongs to an admission that a preemption ended: its end is not
    the attempt's, and the Job makes a new pod once it is gone (podReplacementPolicy
    Failed). Right after a re-admission the condition may still say suspended (the Job
    controller has not synced yet); its time then still marks the preemption.

    Both times are whole seconds, so a pod created in the second of the last suspension or
    resumption is ambiguous: it is the preemption's if it is deleted or being deleted (a
    suspension deletes the pods it stops), and the admission's otherwise."""
    cutoff = _suspension(job) if job is not None and queue_of(job) else None
    if cutoff is None:
        return list(pods)

    def current(pod: Mapping[str, Any]) -> bool:
        created = _created(pod) or cutoff
        deleted = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        return created > cutoff or (created == cutoff and not deleted)

    return [p for p in pods if current(p)]


def admission_deadline(job: Mapping[str, Any], settings: obs.RunSettings,
                       now: datetime) -> datetime | None:
    """When a suspended Job's wait ends the run (admissionTimeoutSeconds, counted from its
    creation or its last suspension), or None: it waits as long as the queue holds it.
    A Job suspended again whose condition still says resumed was preempted just now."""
    limit = settings.admission_timeout_seconds
    if not limit:
        return None
    since = _suspended_at(job) or (now if _suspension(job) else _created(job)) or now
    return since + timedelta(seconds=limit)


def timeout_message(job: Mapping[str, Any], settings: obs.RunSettings) -> str:
    name, queue = Meta(job).name, queue_of(job)
    return (f"PendingTimeout: Job {name} was not admitted by queue {queue} within "
            f"admissionTimeoutSeconds ({settings.admission_timeout_seconds}s); check the "
            f"queue's ClusterQueue quota (`kubectl get workloads`)")


def pending_since(job: Mapping[str, Any], now: datetime) -> datetime | None:
    """Since when an unsuspended Job has been making its pod: its admission for a Job that
    was ever suspended (startTime, which the Job controller resets on every resume; `now`
    while its condition still says suspended: it was admitted a moment ago), else its
    creation."""
    if _suspension(job) is None:
        return _created(job)
    if _suspended_at(job) is not None:
        return now
    started = obs.parse_time((job.get("status") or {}).get("startTime"))
    resumed = _suspension(job, "False")
    return max(started, resumed) if started and resumed else started or resumed or _created(job)
