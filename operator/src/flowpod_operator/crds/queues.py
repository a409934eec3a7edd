"""CRD fields of batch queueing (Kueue, by convention): `spec.queueName` and its timeout.

Role: part of the Deployment and FlowRun CRD schemas (flowpod_operator.crds.resources bases
DeploymentSpec and FlowRunSpec on these models, so the fields live here). A run with a
queue name gets a Job labelled `kueue.x-k8s.io/queue-name` and created suspended; Kueue,
if installed, admits it by setting `spec.suspend: false` (flowpod never imports or requires
Kueue). `admissionTimeoutSeconds` bounds the wait for that admission; `pendingTimeoutSeconds`
cannot, because the API server fills in its default of 300 s, and a queue may rightly hold
a Job for hours. Callers: flowpod_operator.crds.resources, crdgen.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["DeploymentQueueing", "FlowRunQueueing", "QUEUE_NAME_PATTERN"]

# The name becomes a label value: at most 63 characters, alphanumeric at both ends.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
_ABOUT = ("The run's Job gets the label kueue.x-k8s.io/queue-name with this value and is "
          "created suspended, so that Kueue (or any admission controller following the same "
          "convention) admits it; meanwhile the run is Pending 'waiting for admission by "
          "queue <name>'. A Job suspended again (preempted) puts the run back to that wait; "
          "when re-admitted it continues in a new pod of the same Job, without using up a "
          "retry. Unset: the Job starts at once.")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _queue_name(whose: str, extra: str = "") -> Any:
    return Field(None, min_length=1, max_length=63, pattern=QUEUE_NAME_PATTERN,
                 description=f"Name of the Kueue LocalQueue (in the run's namespace) that "
                             f"admits {whose}. " + _ABOUT + extra)


class DeploymentQueueing(_Model):
    """The queue a Deployment's runs wait in, and how long they may wait."""

    queue_name: str | None = _queue_name("this Deployment's runs")
    admission_timeout_seconds: int | None = Field(
        None, ge=1, description="How long a run may wait for its queue (queueName) to admit "
                                "its Job, counted from the Job's creation or its last "
                                "preemption; when exceeded the run ends Crashed "
                                "(PendingTimeout) as a pod that does not start does. Unset: "
                                "it waits as long as the queue holds it. pendingTimeoutSeconds "
                                "counts from the admission on.")


class FlowRunQueueing(_Model):
    """The queue of one run: overrides its Deployment's, and serves ad-hoc runs."""

    queue_name: str | None = _queue_name(
        "this run",
        " Overrides the Deployment's spec.queueName (an ad-hoc run's only way to queue).")
