"""What the operator sees of one FlowRun: the inputs of the pure decision function.

Role: plain, immutable data (an `Observation` of a FlowRun with its Deployment, Jobs and
Pods, and the `RunSettings` that govern it) plus small readers for the Kubernetes objects
(plain dicts as the API returns them). Callers: flowpod_operator._decisions.deciding
and .diagnosing (read), ._runtime.indexing (build), tests (build by hand from dicts).

Kubernetes objects stay plain dicts on purpose: they are what the watch delivers, what the
tests write, and parsing each event into models would cost more than the decision itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

# The labels and annotations are the wire contract's; parse_time is its lenient reader.
from flowpod.contract import (
    ANNOTATION_ADMISSION_TIMEOUT,
    ANNOTATION_FLOW_RUN,
    ANNOTATION_FLOW_RUN_UID,
    ANNOTATION_GRACE,
    ANNOTATION_MAX_MEMORY,
    ANNOTATION_MEMORY_MULTIPLIER,
    ANNOTATION_PENDING_TIMEOUT,
    ANNOTATION_RETRIES,
    LABEL_ATTEMPT,
)
from flowpod.contract import parse_time_or_none as parse_time

__all__ = [
    "Observation",
    "RunSettings",
    "DEFAULT_SETTINGS",
    "LABEL_ATTEMPT",
    "ANNOTATION_FLOW_RUN",
    "ANNOTATION_FLOW_RUN_UID",
    "ANNOTATION_RETRIES",
    "ANNOTATION_PENDING_TIMEOUT",
    "ANNOTATION_GRACE",
    "ANNOTATION_ADMISSION_TIMEOUT",
    "parse_time",
    "attempt_of",
    "belongs_to",
    "settings_from_deployment",
    "settings_from_job",
    "retry_policy_annotations",
]


@dataclass(frozen=True)
class RunSettings:
    """The Deployment knobs that steer a run (CRD defaults: 0 retries, 300 s, 30 s; no
    memory raise: spec.retryPolicy's multiplier and its cap, a Kubernetes quantity).
    `admission_timeout_seconds` bounds a queued Job's wait for admission (None: no bound)."""

    retries: int = 0
    pending_timeout_seconds: int = 300
    cancellation_grace_period_seconds: int = 30
    timeout_seconds: int | None = None
    memory_multiplier: float | None = None
    max_memory: str | None = None
    admission_timeout_seconds: int | None = None

    @property
    def max_attempts(self) -> int:
        return 1 + max(self.retries, 0)


DEFAULT_SETTINGS = RunSettings()


@dataclass(frozen=True)
class Observation:
    """One FlowRun and everything observed about it, as of one moment.

    `jobs`, `pods` are the live objects labelled for this run (any attempt); `gone_pods` are
    the last-seen bodies of pods whose deletion was observed. `fresh` says the jobs and pods
    were listed from the API just now, so a missing object is really missing (a watch cache
    may lag behind). `deployment_fresh` says the same of `deployment`. `job_error` carries
    the API server's refusal to create a Job (an invalid pod template), to be reported.
    `job_events` are the Events of the current attempt's Job when they were just read (None:
    not read), to say why that Job makes no pod. `slot` is the concurrency verdict of a run
    not started yet (flowpod_operator._decisions.limits); None when no limit applies.
    `beyond_history` says why a final run is past its Deployment's history limits (None:
    it is kept). `owned_runs` are the FlowRuns this run started (flowpod.run_deployment:
    their ownerReference names it), gathered only while the run is being cancelled.
    """

    flowrun: Mapping[str, Any]
    deployment: Mapping[str, Any] | None = None
    deployment_fresh: bool = False
    jobs: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    gone_pods: Sequence[Mapping[str, Any]] = ()
    fresh: bool = False
    job_error: str | None = None
    job_events: Sequence[Mapping[str, Any]] | None = None
    slot: Any = None  # a limits.Verdict; typed loosely so observations imports no sibling
    beyond_history: str | None = None
    owned_runs: Sequence[Mapping[str, Any]] = ()

    @property
    def name(self) -> str:
        return self.flowrun["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.flowrun["metadata"]["namespace"]

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.flowrun.get("spec") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.flowrun.get("status") or {}


def belongs_to(obj: Mapping[str, Any], flowrun: Mapping[str, Any]) -> bool:
    """False for a Job or Pod made for another FlowRun of the same name."""
    uid = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_FLOW_RUN_UID)
    return uid is None or uid == (flowrun.get("metadata") or {}).get("uid")


def attempt_of(obj: Mapping[str, Any]) -> int:
    """The attempt number a Job or Pod belongs to (0 when it carries no usable label)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_ATTEMPT, "")
    return int(value) if value.isdigit() else 0


def _int(value: Any, default: int | None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def settings_from_deployment(deployment: Mapping[str, Any] | None) -> RunSettings:
    """Run settings from a Deployment's spec (or the defaults, for ad-hoc runs)."""
    spec = (deployment or {}).get("spec") or {}
    base = DEFAULT_SETTINGS
    return RunSettings(
        retries=_int(spec.get("retries"), base.retries),
        pending_timeout_seconds=_int(spec.get("pendingTimeoutSeconds"),
                                     base.pending_timeout_seconds),
        cancellation_grace_period_seconds=_int(spec.get("cancellationGracePeriodSeconds"),
                                               base.cancellation_grace_period_seconds),
        timeout_seconds=_int(spec.get("timeoutSeconds"), None),
        memory_multiplier=_float((spec.get("retryPolicy") or {}).get("memoryMultiplier")),
        max_memory=_str((spec.get("retryPolicy") or {}).get("maxMemory")),
        admission_timeout_seconds=_int(spec.get("admissionTimeoutSeconds"), None),
    )


def settings_from_job(job: Mapping[str, Any]) -> RunSettings:
    """Run settings as recorded on a Job when the operator created it."""
    notes = (job.get("metadata") or {}).get("annotations") or {}
    base = DEFAULT_SETTINGS
    return RunSettings(
        retries=_int(notes.get(ANNOTATION_RETRIES), base.retries),
        pending_timeout_seconds=_int(notes.get(ANNOTATION_PENDING_TIMEOUT),
                                     base.pending_timeout_seconds),
        cancellation_grace_period_seconds=_int(notes.get(ANNOTATION_GRACE),
                                               base.cancellation_grace_period_seconds),
        timeout_seconds=_int((job.get("spec") or {}).get("activeDeadlineSeconds"), None),
        memory_multiplier=_float(notes.get(ANNOTATION_MEMORY_MULTIPLIER)),
        max_memory=_str(notes.get(ANNOTATION_MAX_MEMORY)),
        admission_timeout_seconds=_int(notes.get(ANNOTATION_ADMISSION_TIMEOUT), None),
    )


def retry_policy_annotations(settings: RunSettings) -> dict[str, str]:
    """The Job annotations settings_from_job reads spec.retryPolicy back from."""
    if settings.memory_multiplier is None or settings.max_memory is None:
        return {}
    return {ANNOTATION_MEMORY_MULTIPLIER: repr(settings.memory_multiplier),
            ANNOTATION_MAX_MEMORY: settings.max_memory}
