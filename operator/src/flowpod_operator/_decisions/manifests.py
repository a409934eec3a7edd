"""The Job of one attempt of a FlowRun: deterministic names, labels, and the pod template.

Role: pure builders (no API calls). `job_name` makes the same name for the same FlowRun and
attempt every time, which is what keeps a restarted operator from creating a second Job.
`build_job` renders the Job of one attempt (ARCHITECTURE.md, "One FlowRun, end to end").
Callers: flowpod_operator._decisions.deciding (create attempt N), ._runtime.actuator (label
values to select a run's objects), tests.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

from flowpod import contract
from flowpod.contract import DEFAULT_SERVICE_ACCOUNT, ENGINE_COMMAND

from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import storage

__all__ = [
    "job_name",
    "label_value",
    "run_labels",
    "missing_flowrun_labels",
    "resolve_parameters",
    "build_job",
    "queue_name",
    "DISRUPTION_RULE",
    "ENGINE_COMMAND",
    "DEFAULT_SERVICE_ACCOUNT",
]

_MAX_LABEL = 63
# A label value: up to 63 of these characters, starting and ending alphanumeric.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


label_value = contract.label_value


def job_name(flowrun_name: str, attempt: int) -> str:
    """`<flowrun>-<attempt>`, shortened with a hash of the FlowRun name past 63 characters."""
    suffix = f"-{attempt}"
    name = flowrun_name + suffix
    if len(name) <= _MAX_LABEL:
        return name
    head = flowrun_name[: _MAX_LABEL - len(suffix) - 9].rstrip("-.")
    return f"{head}-{_digest(flowrun_name)}{suffix}"


def run_labels(flowrun: Mapping[str, Any], attempt: int) -> dict[str, str]:
    spec = flowrun.get("spec") or {}
    labels = {contract.LABEL_FLOW_RUN: label_value(flowrun["metadata"]["name"]),
              obs.LABEL_ATTEMPT: str(attempt)}
    if spec.get("deploymentName"):
        labels[contract.LABEL_DEPLOYMENT] = label_value(spec["deploymentName"])
    return labels


def missing_flowrun_labels(flowrun: Mapping[str, Any]) -> dict[str, str]:
    """Labels a FlowRun should carry and does not: its Deployment's name, so
    `kubectl get fr -l flowpod.io/deployment=etl` lists the runs of `etl` however they
    were created. The value is the one the run's Jobs and Pods carry."""
    name = (flowrun.get("spec") or {}).get("deploymentName")
    if not name:
        return {}
    value = label_value(name)
    labels = (flowrun.get("metadata") or {}).get("labels") or {}
    if labels.get(contract.LABEL_DEPLOYMENT) == value or not _LABEL_VALUE.match(value):
        return {}
    return {contract.LABEL_DEPLOYMENT: value}


# The merge lives in flowpod.contract: the engine, which reads the parameters from the API
# in the pod, resolves them with the same function the operator validates with.
resolve_parameters = contract.resolve_parameters


def queue_name(flowrun: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str | None:
    """The queue whose admission the run's Jobs wait for: the FlowRun's spec.queueName,
    else its Deployment's (None: the Jobs start at once)."""
    return ((flowrun.get("spec") or {}).get("queueName")
            or ((deployment or {}).get("spec") or {}).get("queueName") or None)


# A pod Kubernetes itself stopped (eviction, preemption, node drain: the DisruptionTarget
# condition) fails the Job with reason PodFailurePolicy, naming the condition, instead of an
# anonymous BackoffLimitExceeded; the run's retries stay the operator's (one Job per attempt).
DISRUPTION_RULE = {"action": "FailJob",
                   "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def _batch_fields(job_spec: dict[str, Any], job_meta: dict[str, Any], queue: str | None,
                  settings: obs.RunSettings) -> None:
    """What batch tooling reads: the failure and replacement policies, and Kueue's queue."""
    # Never a new pod while a terminating one lives (after a re-admission, say): two
    # engines must not report to one FlowRun.
    job_spec["podReplacementPolicy"] = "Failed"
    job_spec["podFailurePolicy"] = {"rules": [dict(DISRUPTION_RULE)]}
    if queue:
        # Kueue's convention: it admits a suspended Job labelled with its LocalQueue.
        job_meta["labels"][contract.LABEL_KUEUE_QUEUE_NAME] = queue
        job_spec["suspend"] = True
        if settings.admission_timeout_seconds:
            job_meta["annotations"][contract.ANNOTATION_ADMISSION_TIMEOUT] = str(
                settings.admission_timeout_seconds)


def _env(flowrun: Mapping[str, Any], entrypoint: str, attempt: int,
         extra: list[Mapping[str, Any]], result_storage: str | None) -> list[dict[str, Any]]:
    # No parameters here: one variable is capped at 128 KiB (the pod would fail to start with
    # "argument list too long"); the engine reads them from the FlowRun and its Deployment.
    ours = [
        {"name": contract.ENV_FLOW_RUN_NAME, "value": flowrun["metadata"]["name"]},
        {"name": contract.ENV_FLOW_RUN_NAMESPACE,
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": contract.ENV_ENTRYPOINT, "value": entrypoint},
        {"name": contract.ENV_ATTEMPT, "value": str(attempt)},
    ]
    if result_storage:
        ours.append({"name": contract.ENV_RESULT_STORAGE, "value": result_storage})
    # spec.resultStorage is the one way to set the storage: the operator checks it.
    taken = {item["name"] for item in ours} | {contract.ENV_PARAMETERS,
                                               contract.ENV_RESULT_STORAGE}
    # The engine's own variables win: a template must not be able to point a run elsewhere.
    return ours + [dict(item) for item in extra if item.get("name") not in taken]


def _container(image: str, env: list[dict[str, Any]], template: Mapping[str, Any],
               resources: Mapping[str, Any] | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": contract.CONTAINER_NAME,
        "image": image,
        "command": list(ENGINE_COMMAND),
        "env": env,
        # On failure the last log lines become the termination message: crash messages
        # then show the traceback's tail without anyone running `kubectl logs`.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }
    for key in ("resources", "volumeMounts", "workingDir"):
        if template.get(key):
            container[key] = template[key]
    if resources:  # an attempt after an OOMKilled one may get more memory (spec.retryPolicy)
        container["resources"] = dict(resources)
    return container


def build_job(flowrun: Mapping[str, Any], deployment: Mapping[str, Any] | None, attempt: int,
              *, settings: obs.RunSettings, service_account: str = DEFAULT_SERVICE_ACCOUNT,
              resources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The batch/v1 Job manifest for `attempt` (from 1) of `flowrun`; `resources`, when
    given, are the flow container's instead of the podTemplate's."""
    meta = flowrun["metadata"]
    spec = flowrun.get("spec") or {}
    dspec = (deployment or {}).get("spec") or {}
    entrypoint = dspec.get("entrypoint") or spec.get("entrypoint") or ""
    image = dspec.get("image") or spec.get("image") or ""
    template = dspec.get("podTemplate") or {}
    labels = run_labels(flowrun, attempt)
    notes = {obs.ANNOTATION_FLOW_RUN: meta["name"], obs.ANNOTATION_FLOW_RUN_UID: meta["uid"]}
    env = _env(flowrun, entrypoint, attempt, list(template.get("env") or ()),
               storage.result_storage(flowrun, deployment))
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": template.get("serviceAccountName") or service_account,
        # Any deletion of the pod (cancel, kubectl, the Job controller) then gives the
        # engine the Deployment's cancellation grace period to report and exit.
        "terminationGracePeriodSeconds": settings.cancellation_grace_period_seconds,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(image, env, template, resources)],
    }
    for key in ("nodeSelector", "tolerations", "volumes"):
        if template.get(key):
            pod_spec[key] = template[key]
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": {"labels": dict(labels), "annotations": dict(notes)},
                     "spec": pod_spec},
    }
    if settings.timeout_seconds:
        job_spec["activeDeadlineSeconds"] = settings.timeout_seconds
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["name"], attempt),
            "namespace": meta["namespace"],
            "labels": dict(labels),
            "annotations": {
                **notes,
                obs.ANNOTATION_RETRIES: str(settings.retries),
                obs.ANNOTATION_PENDING_TIMEOUT: str(settings.pending_timeout_seconds),
                obs.ANNOTATION_GRACE: str(settings.cancellation_grace_period_seconds),
                **obs.retry_policy_annotations(settings),
            },
            "ownerReferences": [{
                "apiVersion": contract.API_VERSION,
                "kind": contract.KIND_FLOW_RUN,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": job_spec,
    }
    _batch_fields(job_spec, job["metadata"], queue_name(flowrun, deployment), settings)
    return job
