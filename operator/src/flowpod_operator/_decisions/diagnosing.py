"""How one attempt of a run is doing, read from its Job and Pod: the mapping table.

Role: a pure function from the observed Job and Pod(s) of one attempt to a `Diagnosis`:
still starting, running, stopping, or ended, and if ended, the exact Crashed message the
run gets when its engine did not report a final state. Every row of the Crashed-message table
(README.md, "Troubleshooting"; ARCHITECTURE.md, "Who writes which state") lives here, with
its message. Caller: flowpod_operator._decisions.deciding (and the unit tests, with dicts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from flowpod import contract

from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import queueing
from flowpod_operator._decisions import waiting as wait

__all__ = [
    "Phase",
    "Diagnosis",
    "diagnose",
    "is_terminated",
    "is_started",
    "STUCK_AFTER",
    "NODE_LOST_REASONS",
    "IMAGE_OR_CONFIG_REASONS",
    "LOOK_AT_JOB_AFTER",
    "LOOK_AGAIN_EVERY",
]

# A pod still present this long after its deletionTimestamp (which already includes the
# grace period) will not go away by itself: its node is gone or its kubelet is stuck.
STUCK_AFTER = timedelta(seconds=10)
# DisruptionTarget reasons that mean the node, not the pod, went away.
NODE_LOST_REASONS = frozenset({"DeletionByPodGC", "DeletionByTaintManager", "NodeLost"})
# A Job normally has its pod within milliseconds; one without a pod this long is asked why
# (its Events), and asked again this often while it stays so.
LOOK_AT_JOB_AFTER = timedelta(seconds=2)
LOOK_AGAIN_EVERY = timedelta(seconds=5)
IMAGE_OR_CONFIG_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "ErrImageNeverPull",
})

# What an exit code usually means; said in our words (Prefect's runner has similar hints).
_EXIT_HINTS = {
    137: "SIGKILL: the process was killed outright, most often for using more memory than "
         "it may, or by hand",
    143: "SIGTERM: the process was asked to stop, e.g. its pod was deleted",
    247: "the process was most likely stopped for using too much memory",
}


class Phase(enum.Enum):
    ABSENT = "absent"      # nothing observed for this attempt
    STARTING = "starting"  # Job or pod exists, the container has not started yet
    RUNNING = "running"    # the container has started and not ended
    STOPPING = "stopping"  # the pod is being deleted and its container has not ended
    ENDED = "ended"        # the attempt is over (or certainly will be): see reason/message


@dataclass(frozen=True)
class Diagnosis:
    """The state of one attempt.

    For ENDED, `message` is the Crashed message the run gets if it is not already final,
    `reason` a short CamelCase cause (also written to status.reason), `exit_code` the
    container's, when known. `settled` says no process of the attempt can still run, so the
    next attempt may start. `stuck_pods` should be force-deleted. `recheck_at` is when time
    alone may change the diagnosis. `needs_fresh` says absence was decisive but the watch
    cache may lag: list the objects from the API and diagnose again. While STARTING,
    `waiting` says what the attempt waits for when that needs a person (a wrong image, no
    node), and `needs_job_events` asks for the Events of a Job that has made no pod.
    `queued` is the Pending message of an attempt whose Job waits for its queue's admission
    (created suspended, or suspended again: preempted).
    """

    phase: Phase
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    pod_name: str | None = None
    settled: bool = True
    retryable: bool = True
    stuck_pods: tuple[str, ...] = ()
    unstarted_pods: tuple[str, ...] = ()
    recheck_at: datetime | None = None
    needs_fresh: bool = False
    waiting: wait.Waiting | None = None
    needs_job_events: bool = False
    queued: str | None = None


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = _status(pod).get("containerStatuses") or []
    for item in statuses:
        if item.get("name") == contract.CONTAINER_NAME:
            return item
    return statuses[0] if statuses else {}


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in _status(obj).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_terminated(pod: Mapping[str, Any]) -> bool:
    """True when no process of the pod can run any more."""
    if _status(pod).get("phase") in ("Succeeded", "Failed"):
        return True
    return bool((_container(pod).get("state") or {}).get("terminated"))


def is_started(pod: Mapping[str, Any]) -> bool:
    """True once the flow container has run (it may have ended since)."""
    state = _container(pod).get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def _disruption(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when Kubernetes itself disrupted the pod: eviction or node loss."""
    status = _status(pod)
    cond = _condition(pod, "DisruptionTarget")
    cause = cond.get("reason", "") if cond and cond.get("status") == "True" else ""
    detail = (cond or {}).get("message") or status.get("message") or ""
    if cause in NODE_LOST_REASONS or status.get("reason") == "NodeLost":
        node = (pod.get("spec") or {}).get("nodeName") or "its node"
        return "NodeLost", _join(f"node lost: {node} stopped responding, so the pod "
                                 f"{_meta(pod).get('name')} was removed", detail)
    if cause or status.get("reason") == "Evicted":
        return "Evicted", _join(f"Evicted: pod {_meta(pod).get('name')} was evicted", detail)
    return None


def _join(head: str, detail: str) -> str:
    return f"{head} ({detail.strip()})" if detail and detail.strip() else head


def _memory_limit(pod: Mapping[str, Any]) -> str | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == contract.CONTAINER_NAME:
            return ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return None


def _exit_message(code: int, detail: str) -> str:
    hint = _EXIT_HINTS.get(code)
    text = f"exited with code {code}" + (f" ({hint})" if hint else "")
    return f"{text}: {detail.strip()}" if detail and detail.strip() else text


def _ended_pod(pod: Mapping[str, Any], *, deleted: bool) -> Diagnosis:
    """The diagnosis of a pod whose process is over (terminated, or gone for good)."""
    name = _meta(pod).get("name")
    terminated = (_container(pod).get("state") or {}).get("terminated") or {}
    code = terminated.get("exitCode")
    status = _status(pod)
    if status.get("reason") == "DeadlineExceeded":
        return Diagnosis(Phase.ENDED, "DeadlineExceeded", "deadline exceeded: the pod ran past "
                         "its activeDeadlineSeconds", code, name, retryable=False)
    if terminated.get("reason") == "OOMKilled":
        limit = _memory_limit(pod)
        text = "OOMKilled: the flow used more memory than its limit" + (
            f" of {limit}" if limit else "") + "; raise resources.limits.memory in the " \
            "Deployment's podTemplate or use less memory"
        return Diagnosis(Phase.ENDED, "OOMKilled", text, code if code is not None else 137, name)
    disrupted = _disruption(pod)
    if disrupted is not None:
        return Diagnosis(Phase.ENDED, disrupted[0], disrupted[1], code, name)
    if code is None and deleted:
        # Gone without a recorded end: someone (or something) deleted the pod.
        return Diagnosis(Phase.ENDED, "PodDeleted", f"pod deleted: pod {name} was deleted "
                         "before the run reported a final state", None, name)
    if code is None:
        return Diagnosis(Phase.ENDED, status.get("reason") or "PodFailed",
                         _join(f"pod {name} failed before its container ran",
                               status.get("message") or ""), None, name)
    if code != 0:
        return Diagnosis(Phase.ENDED, terminated.get("reason") or "Error",
                         _exit_message(code, terminated.get("message") or ""), code, name)
    return Diagnosis(Phase.ENDED, terminated.get("reason") or "Completed",
                     "engine exited without reporting a final state", 0, name)


def _waiting(pod: Mapping[str, Any], pending: int, now: datetime) -> Diagnosis:
    """A pod whose container has not started: fine until pendingTimeoutSeconds passes."""
    name = _meta(pod).get("name")
    since = obs.parse_time(_meta(pod).get("creationTimestamp")) or now
    deadline = since + timedelta(seconds=pending)
    if now < deadline:
        return Diagnosis(Phase.STARTING, pod_name=name, recheck_at=deadline, settled=False,
                         waiting=wait.from_pod(pod))
    waiting = (_container(pod).get("state") or {}).get("waiting") or {}
    scheduled = _condition(pod, "PodScheduled")
    why = waiting.get("reason") or ""
    if why in IMAGE_OR_CONFIG_REASONS:
        text = _join(f"{why}: the flow container could not start for {pending}s "
                     f"(pendingTimeoutSeconds)", waiting.get("message") or "")
        text += "; check the image name and the Deployment's podTemplate"
    elif scheduled and scheduled.get("status") == "False":
        why = scheduled.get("reason") or "Unschedulable"
        text = _join(f"{why}: no node could run pod {name} for {pending}s "
                     f"(pendingTimeoutSeconds)", scheduled.get("message") or "")
    else:
        why = why or "PendingTimeout"
        text = f"{why}: pod {name} did not start within pendingTimeoutSeconds ({pending}s)"
    return Diagnosis(Phase.ENDED, why, text, None, name, settled=False,
                     unstarted_pods=(name,))


def _live_pod(pod: Mapping[str, Any], pending: int, now: datetime) -> Diagnosis:
    name = _meta(pod).get("name")
    if is_terminated(pod):
        return _ended_pod(pod, deleted=False)
    deleting = obs.parse_time(_meta(pod).get("deletionTimestamp"))
    if deleting is not None:
        if now < deleting + STUCK_AFTER:
            # Carries the verdict: when nobody asked to cancel, the engine sees only SIGTERM,
            # so the operator says exactly why the pod is going (see deciding._follow).
            verdict = _ended_pod(pod, deleted=True)
            return Diagnosis(Phase.STOPPING, verdict.reason, verdict.message, None, name,
                             settled=False, recheck_at=deleting + STUCK_AFTER)
        ended = _ended_pod(pod, deleted=True)
        return Diagnosis(Phase.ENDED, ended.reason, ended.message, None, name, settled=False,
                         stuck_pods=(name,))
    if is_started(pod):
        return Diagnosis(Phase.RUNNING, pod_name=name, settled=False)
    return _waiting(pod, pending, now)


def _podless_job(job: Mapping[str, Any], pending: int, now: datetime, fresh: bool,
                 events: Sequence[Mapping[str, Any]] | None) -> Diagnosis:
    """A Job with no pod in sight: not created yet, or its pod vanished unobserved."""
    name = _meta(job).get("name")
    status = _status(job)
    if status.get("succeeded") or status.get("failed") or _finished(job):
        if not fresh:
            return Diagnosis(Phase.ENDED, needs_fresh=True)
        if status.get("succeeded"):
            return Diagnosis(Phase.ENDED, "Completed", "engine exited without reporting a "
                             "final state", 0)
        return Diagnosis(Phase.ENDED, "PodDeleted", f"pod deleted: the pod of Job {name} "
                         "failed or was deleted before the run reported a final state")
    since = queueing.pending_since(job, now) or now
    deadline = since + timedelta(seconds=pending)
    if now < deadline:
        return _starting_job(job, since, deadline, now, events)
    if not fresh:
        return Diagnosis(Phase.ENDED, needs_fresh=True)
    return Diagnosis(Phase.ENDED, "PendingTimeout", f"PendingTimeout: Job {name} started no "
                     f"pod within pendingTimeoutSeconds ({pending}s); `kubectl describe job "
                     f"{name}` shows why (for example a missing service account)",
                     settled=False)


def _starting_job(job: Mapping[str, Any], since: datetime, deadline: datetime,
                  now: datetime, events: Sequence[Mapping[str, Any]] | None) -> Diagnosis:
    """A Job still within its pending time and without a pod: past a moment, its Events
    say whether the API server refuses the pod (a missing ServiceAccount, say). A Job
    suspended by someone else makes no pod on purpose: nothing to ask."""
    if queueing.is_suspended(job):
        return Diagnosis(Phase.STARTING, settled=False, recheck_at=deadline)
    look_at = since + LOOK_AT_JOB_AFTER
    if now < look_at:
        return Diagnosis(Phase.STARTING, settled=False, recheck_at=min(look_at, deadline))
    if events is None:
        return Diagnosis(Phase.STARTING, settled=False, needs_job_events=True)
    return Diagnosis(Phase.STARTING, settled=False,
                     recheck_at=min(now + LOOK_AGAIN_EVERY, deadline),
                     waiting=wait.from_job_events(job, events))


def _suspended(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
               gone_pods: Sequence[Mapping[str, Any]], settings: obs.RunSettings,
               now: datetime) -> Diagnosis:
    """A Job its queue has not admitted (yet, or again: preempted): its pods are deleted by
    the Job controller, not crashed. No Events are read: many queued runs would load the API."""
    live = [p for p in pods if not is_terminated(p)]
    stuck = tuple(_meta(p).get("name") for p in live
                  if (at := _stuck_at(p)) is not None and now >= at)
    seen = _newest(list(pods) + list(gone_pods))
    message = queueing.waiting_message(job, _meta(seen).get("name") if seen else None)
    deadline = queueing.admission_deadline(job, settings, now)
    if deadline is not None and now >= deadline:
        return Diagnosis(Phase.ENDED, "PendingTimeout", queueing.timeout_message(job, settings),
                         settled=not live, stuck_pods=stuck)
    recheck = [t for t in (deadline, *(_stuck_at(p) for p in live)) if t and t > now]
    return Diagnosis(Phase.STARTING, settled=not live, stuck_pods=stuck, queued=message,
                     recheck_at=min(recheck) if recheck else None)


def _stuck_at(pod: Mapping[str, Any]) -> datetime | None:
    deleting = obs.parse_time(_meta(pod).get("deletionTimestamp"))
    return deleting + STUCK_AFTER if deleting is not None else None


def _disrupted_job(job: Mapping[str, Any]) -> str | None:
    """The Job's message when manifests.DISRUPTION_RULE failed it, else None."""
    for kind in ("FailureTarget", "Failed"):
        cond = _condition(job, kind)
        if cond and cond.get("status") == "True" and cond.get("reason") == "PodFailurePolicy":
            return cond.get("message") or "a pod has condition DisruptionTarget"
    return None


def _as_disruption(found: Diagnosis, job: Mapping[str, Any], detail: str) -> Diagnosis:
    """What the Job's podFailurePolicy saw, when the pod itself no longer shows it."""
    name = _meta(job).get("name")
    pod = f"pod {found.pod_name}" if found.pod_name else f"the pod of Job {name}"
    return replace(found, reason="Evicted", message=(
        f"Evicted: {pod} was evicted, preempted or drained from its node (Kubernetes marked "
        f"it DisruptionTarget), so Job {name} failed by its podFailurePolicy ({detail})"))


def _finished(job: Mapping[str, Any]) -> bool:
    for kind in ("Complete", "Failed"):
        cond = _condition(job, kind)
        if cond and cond.get("status") == "True":
            return True
    return False


def _deadline(job: Mapping[str, Any] | None, now: datetime) -> bool:
    if job is None:
        return False
    for kind in ("FailureTarget", "Failed"):
        cond = _condition(job, kind)
        if cond and cond.get("status") == "True" and cond.get("reason") == "DeadlineExceeded":
            return True
    # The Job controller deletes the pod a moment before it records the condition; a Job past
    # its deadline already explains a pod being deleted.
    limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
    started = obs.parse_time(_status(job).get("startTime"))
    return bool(limit and started and now >= started + timedelta(seconds=int(limit)))


def _newest(objs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not objs:
        return None
    return max(objs, key=lambda o: (_meta(o).get("creationTimestamp") or "",
                                    _meta(o).get("name") or ""))


def diagnose(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]],
             gone_pods: Sequence[Mapping[str, Any]], *, settings: obs.RunSettings,
             now: datetime, fresh: bool, job_name: str | None = None,
             job_events: Sequence[Mapping[str, Any]] | None = None) -> Diagnosis:
    """Diagnose one attempt from its Job (None if not seen), live pods and deleted pods;
    `job_events` are the Job's Events when they were read (None: not read)."""
    pending = settings.pending_timeout_seconds
    if job is not None and queueing.is_suspended(job) and queueing.queue_of(job) \
            and not _finished(job):
        return _suspended(job, pods, gone_pods, settings, now)
    pods, gone_pods = queueing.this_admission(job, pods), queueing.this_admission(job, gone_pods)
    pod = _newest(pods)
    if pod is not None:
        found = _live_pod(pod, pending, now)
    elif gone_pods:
        found = _ended_pod(_newest(gone_pods), deleted=True)
    elif job is not None:
        found = _podless_job(job, pending, now, fresh, job_events)
    elif not fresh:
        found = Diagnosis(Phase.ABSENT, needs_fresh=True, settled=False)
    else:
        found = Diagnosis(Phase.ENDED, "JobDeleted", f"Job {job_name or '(unknown)'} was "
                          "deleted before the run reported a final state")
    if found.needs_fresh:
        return found
    if (job is not None and found.reason == "PodDeleted" and not fresh
            and queueing.queue_of(job)):
        # A queue's preemption suspends the Job first, then the Job controller deletes the
        # pod: a watch may bring the deletion before the suspension. Look at the API first.
        return Diagnosis(found.phase, needs_fresh=True, settled=False)
    disrupted = _disrupted_job(job) if job is not None else None
    if disrupted and found.phase is Phase.ENDED and found.reason not in ("Evicted", "NodeLost"):
        return _as_disruption(found, job or {}, disrupted)
    if not _deadline(job, now):
        return found
    limit = settings.timeout_seconds
    text = "deadline exceeded: the run did not finish within " + (
        f"timeoutSeconds ({limit}s)" if limit else "its Job's activeDeadlineSeconds") + \
        ", so Kubernetes stopped its Job"
    return Diagnosis(Phase.ENDED, "DeadlineExceeded", text, found.exit_code,
                     found.pod_name, settled=found.settled, retryable=False,
                     stuck_pods=found.stuck_pods, recheck_at=found.recheck_at)
