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
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

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
    "parse_time",
    "attempt_of",
    "belongs_to",
    "settings_from_deployment",
    "settings_from_job",
]

# The attempt number rides on every Job and Pod, so an attempt is recognised even before
# the FlowRun's status records it (e.g. the operator died between creating and recording).
LABEL_ATTEMPT = "flowpod.io/attempt"
# Label values stop at 63 characters; FlowRun names may be longer, so the full name is kept
# in an annotation too and is what maps a Job or Pod back to its FlowRun.
ANNOTATION_FLOW_RUN = "flowpod.io/flow-run"
# A FlowRun deleted and re-created under the same name must not inherit the old one's Job
# (same deterministic name) or pods: objects carry the uid of the FlowRun they were made for.
ANNOTATION_FLOW_RUN_UID = "flowpod.io/flow-run-uid"
# The run settings are copied onto each Job when it is created, so later decisions about
# that attempt never depend on a Deployment that may since have been edited or deleted.
ANNOTATION_RETRIES = "flowpod.io/retries"
ANNOTATION_PENDING_TIMEOUT = "flowpod.io/pending-timeout-seconds"
ANNOTATION_GRACE = "flowpod.io/cancellation-grace-period-seconds"


@dataclass(frozen=True)
class RunSettings:
    """The Deployment knobs that steer a run (CRD defaults: 0 retries, 300 s, 30 s)."""

    retries: int = 0
    pending_timeout_seconds: int = 300
    cancellation_grace_period_seconds: int = 30
    timeout_seconds: int | None = None

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
    """

    flowrun: Mapping[str, Any]
    deployment: Mapping[str, Any] | None = None
    deployment_fresh: bool = False
    jobs: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    gone_pods: Sequence[Mapping[str, Any]] = ()
    fresh: bool = False
    job_error: str | None = None

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


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API as an aware datetime (None if absent or unusable:
    a time the operator cannot read must not stop it from deciding everything else)."""
    if not text:
        return None
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    # RFC 3339 allows nanoseconds; Python takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
    )
