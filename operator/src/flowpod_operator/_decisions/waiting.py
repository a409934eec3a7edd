"""Why an attempt that has not started yet is still waiting, read from its Pod or Job.

Role: pure functions that turn what Kubernetes says about an unstarted attempt (the flow
container's waiting reason, the scheduler's PodScheduled condition, the Job controller's
FailedCreate Events) into a `Waiting`: a short reason and the Pending message the run shows
while it waits. The reasons are the ones that need a person (a wrong image, no node that
fits, a missing ServiceAccount); ordinary steps such as ContainerCreating give none.
Callers: flowpod_operator._decisions.diagnosing (while an attempt is STARTING),
.deciding (writes the message, once per reason family) and flowpod_operator._runtime.eventing
(turns such a Pending entry into a Warning Event).

A message always starts with "<reason>: ", so the reason can be read back from a state
history entry (`reason_of`) without any field beyond the state itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from flowpod import contract

__all__ = ["Waiting", "REASONS", "family", "reason_of", "new_message", "from_pod",
           "from_job_events", "FAILED_CREATE"]

# The kubelet alternates between these two while it retries a pull: one problem, not two.
_IMAGE_PULL = frozenset({"ErrImagePull", "ImagePullBackOff"})
_CONTAINER = _IMAGE_PULL | {"InvalidImageName", "ErrImageNeverPull",
                            "CreateContainerConfigError", "CreateContainerError"}
# PodScheduled=False reasons (the scheduler's); SchedulingGated waits for a gate's owner.
_SCHEDULING = frozenset({"Unschedulable", "SchedulerError", "SchedulingGated"})
# The Job controller's Event reason when the API server refuses the pod it creates.
FAILED_CREATE = "FailedCreate"
_JOB = frozenset({FAILED_CREATE, "ServiceAccountNotFound"})
REASONS = _CONTAINER | _SCHEDULING | _JOB

_MISSING_ACCOUNT = re.compile(r'serviceaccounts? "([^"]+)" not found')


@dataclass(frozen=True)
class Waiting:
    """Why an attempt waits: `reason` (CamelCase, one of REASONS) and the Pending message."""

    reason: str
    message: str


def family(reason: str | None) -> str | None:
    """Reasons that describe the same problem (a pull retried) share one family."""
    return "ImagePull" if reason in _IMAGE_PULL else reason


def reason_of(message: str | None) -> str | None:
    """The reason a Waiting message starts with, or None for any other message."""
    head, sep, _ = (message or "").partition(": ")
    return head if sep and head in REASONS else None


def new_message(shown: str, found: Waiting | None, pod_name: str | None) -> str | None:
    """The Pending message to write instead of `shown` (the run's current one), or None to
    keep it: once per problem (a pull being retried is one problem, however its reason
    alternates), and once more when a shown problem clears while the pod still starts."""
    reason = reason_of(shown)
    if found is not None:
        return None if family(reason) == family(found.reason) else found.message
    if reason is None or not pod_name:
        return None
    return f"Pod {pod_name} is starting ({reason} is resolved)"


def _detail(text: str | None) -> str:
    text = (text or "").strip()
    return f" ({text})" if text else ""


def _flow_container(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = spec.get("containers") or []
    for item in containers:
        if item.get("name") == contract.CONTAINER_NAME:
            return item
    return containers[0] if containers else {}


def _container_waiting(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for item in (pod.get("status") or {}).get("containerStatuses") or []:
        if item.get("name") == contract.CONTAINER_NAME:
            return (item.get("state") or {}).get("waiting") or {}
    return {}


def from_pod(pod: Mapping[str, Any]) -> Waiting | None:
    """The problem an unstarted pod shows, or None while it is merely on its way."""
    name = (pod.get("metadata") or {}).get("name")
    waiting = _container_waiting(pod)
    why = waiting.get("reason") or ""
    if why in _CONTAINER:
        image = _flow_container(pod.get("spec") or {}).get("image") or "(none)"
        if why in _IMAGE_PULL or why in ("InvalidImageName", "ErrImageNeverPull"):
            text = (f'{why}: the image "{image}" of the flow container cannot be pulled'
                    f'{_detail(waiting.get("message"))}; check the image name and tag, and '
                    "that the cluster may pull from its registry (imagePullSecrets)")
        else:
            text = (f"{why}: the flow container of pod {name} cannot be created"
                    f'{_detail(waiting.get("message"))}; check the Deployment\'s podTemplate '
                    "(env from Secrets or ConfigMaps, volumes)")
        return Waiting(why, text)
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            why = cond.get("reason") or "Unschedulable"
            if why not in _SCHEDULING:
                return None
            return Waiting(why, f"{why}: no node can run pod {name} yet"
                                f"{_detail(cond.get('message'))}")
    return None


def _newest(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    def when(event: Mapping[str, Any]) -> str:
        series = event.get("series") or {}
        return str(series.get("lastObservedTime") or event.get("lastTimestamp")
                   or event.get("eventTime") or "")
    return max(events, key=when)


def from_job_events(job: Mapping[str, Any],
                    events: Sequence[Mapping[str, Any]]) -> Waiting | None:
    """Why a Job has no pod, from its Events: the API server refused the pod (a missing
    ServiceAccount, a quota, an admission webhook). None when no such Event exists."""
    refused = [e for e in events if e.get("reason") == FAILED_CREATE]
    if not refused:
        return None
    name = (job.get("metadata") or {}).get("name")
    detail = str(_newest(refused).get("message") or "")
    missing = _MISSING_ACCOUNT.search(detail)
    if missing:
        namespace = (job.get("metadata") or {}).get("namespace")
        return Waiting("ServiceAccountNotFound",
                       f'ServiceAccountNotFound: the ServiceAccount "{missing.group(1)}" does '
                       f"not exist in namespace {namespace}, so Job {name} cannot create its "
                       "pod; create it (examples/flow-run-rbac.yaml, or the Helm chart's "
                       "flowRuns.namespaces) or set the Deployment's "
                       "spec.podTemplate.serviceAccountName")
    return Waiting(FAILED_CREATE, f"{FAILED_CREATE}: Job {name} cannot create its pod"
                                  f"{_detail(detail)}")
