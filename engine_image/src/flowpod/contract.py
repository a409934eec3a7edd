"""The wire contract: every name and format shared by the engine, the operator and the CLI.

Role: the one place that defines what crosses a process boundary. The Kubernetes API group,
version, plurals and kinds; the labels and annotations on Jobs and Pods; the env vars the
operator's Job gives the engine; the flow container's name, command and default
ServiceAccount; the in-cluster service-account directory; API paths; RFC 3339 timestamps;
the bounds of the FlowRun status with the wire form of its task-run summary and log tail;
and a run's parameters: how they are merged and how large they may be. The engine
(flowpod.flowruns, flowpod.engine), the operator (flowpod_operator, including the CRD
generator) and the tests import these names; nothing else spells them out. See
ARCHITECTURE.md, "Two images" and "One FlowRun, end to end".

Stdlib only and cheap to import: it is loaded by `import flowpod` and in every flow-run pod.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    # API group and resources
    "GROUP", "VERSION", "API_VERSION", "API_PREFIX", "FLOWRUNS", "DEPLOYMENTS",
    "KIND_FLOW_RUN", "KIND_DEPLOYMENT",
    # labels and annotations on Jobs and Pods
    "LABEL_FLOW_RUN", "LABEL_DEPLOYMENT", "LABEL_SCHEDULE", "LABEL_ATTEMPT",
    "LABEL_PARENT_FLOW_RUN",
    "ANNOTATION_FLOW_RUN", "ANNOTATION_FLOW_RUN_UID", "ANNOTATION_RETRIES",
    "ANNOTATION_PENDING_TIMEOUT", "ANNOTATION_GRACE", "ANNOTATION_LAST_APPLIED",
    "ANNOTATION_MEMORY_MULTIPLIER", "ANNOTATION_MAX_MEMORY",
    "LABEL_RETRY_OF", "ANNOTATION_RETRY_OF",
    "LABEL_KUEUE_QUEUE_NAME", "ANNOTATION_ADMISSION_TIMEOUT",
    # the flow-run pod
    "ENV_FLOW_RUN_NAME", "ENV_FLOW_RUN_NAMESPACE", "ENV_ENTRYPOINT", "ENV_PARAMETERS",
    "ENV_ATTEMPT", "ENV_RESULT_DIR", "ENV_RESULT_STORAGE", "CONTAINER_NAME", "ENGINE_COMMAND",
    "ENV_DASK_ADDRESS",
    "DEFAULT_SERVICE_ACCOUNT", "SERVICE_ACCOUNT_DIR",
    # hooks after a hard kill
    "ENV_HOOKS", "LABEL_HOOKS", "HOOKS_AFTER_KILL", "hook_for_state_type",
    "HOOKS_RUNNER_ENGINE", "HOOKS_RUNNER_JOB", "HOOKS_PENDING", "HOOKS_RUNNING",
    "HOOKS_SUCCEEDED", "HOOKS_FAILED", "HOOKS_DONE",
    # status bounds and condition types
    "MAX_STATE_HISTORY", "MAX_MESSAGE_LENGTH", "MAX_LISTED_RUNS", "MAX_INLINE_RESULT_BYTES",
    "MAX_PARAMETERS_BYTES", "MAX_LOG_TAIL_LINES", "MAX_LOG_TAIL_BYTES", "MAX_LOG_LINE_LENGTH",
    "CONDITION_SUCCEEDED", "CONDITION_READY", "CONDITION_STALLED",
    # pause and resume
    "STATUS_PAUSE", "STATUS_RESUMED", "SPEC_RESUME", "pause_wire", "resumed_wire",
    "pause_of", "resume_of", "resumed_input",
    # HTTP
    "MERGE_PATCH", "JSON_PATCH",
    # builders and formats
    "resource_path", "flowrun_path", "deployment_path",
    "format_time", "format_time_exact", "parse_time", "parse_time_or_none",
    "label_value", "truncate_message", "listed_run", "task_runs_wire", "resolve_parameters",
    "parameters_size", "log_tail",
]

# -- API group and resources -----------------------------------------------------------------
GROUP = "flowpod.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
API_PREFIX = f"/apis/{GROUP}/{VERSION}"
FLOWRUNS = "flowruns"
DEPLOYMENTS = "deployments"
KIND_FLOW_RUN = "FlowRun"
KIND_DEPLOYMENT = "Deployment"

# -- labels and annotations on the Jobs and Pods of a run ------------------------------------
LABEL_FLOW_RUN = "flowpod.io/flow-run"
# Also on FlowRuns of a Deployment (the CLI sets it, the operator adds it when missing), so
# `kubectl get fr -l flowpod.io/deployment=etl` lists a Deployment's runs.
LABEL_DEPLOYMENT = "flowpod.io/deployment"
# On FlowRuns the operator creates from a Deployment's schedule: the schedule's slug.
LABEL_SCHEDULE = "flowpod.io/schedule"
# The attempt number rides on every Job and Pod, so an attempt is recognised even before
# the FlowRun's status records it (e.g. the operator died between creating and recording).
LABEL_ATTEMPT = "flowpod.io/attempt"
# On FlowRuns a flow started with flowpod.run_deployment: the parent FlowRun's name (as
# label_value gives it), so `kubectl get fr -l flowpod.io/parent-flow-run=NAME` lists a
# run's children. Their ownerReference to the parent (with its uid) is what decides.
LABEL_PARENT_FLOW_RUN = "flowpod.io/parent-flow-run"
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
# spec.retryPolicy: the memory raise after an OOMKilled attempt, and its cap.
ANNOTATION_MEMORY_MULTIPLIER = "flowpod.io/memory-multiplier"
ANNOTATION_MAX_MEMORY = "flowpod.io/max-memory"
# A Job of a run with a queueName carries Kueue's queue label and is created suspended, for
# Kueue to admit; how long it may wait for that travels with it (absent: no limit).
LABEL_KUEUE_QUEUE_NAME = "kueue.x-k8s.io/queue-name"
ANNOTATION_ADMISSION_TIMEOUT = "flowpod.io/admission-timeout-seconds"
# On a FlowRun `flowpod retry` created: the run it retries (a final run is never left, so
# a retry is a new run). The label (cut to 63 characters) selects a run's retries; the
# annotation keeps the full name.
LABEL_RETRY_OF = "flowpod.io/retry-of"
ANNOTATION_RETRY_OF = "flowpod.io/retry-of"
# kubectl's own (client-side `kubectl apply`): the manifest as applied, nulls included,
# whereas the object itself lost them. The operator compares the two parameter maps.
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# -- the flow-run pod ----------------------------------------------------------------------
# Set by the operator's Job on the flow container; read by `python -m flowpod.engine`.
ENV_FLOW_RUN_NAME = "FLOWPOD_FLOW_RUN_NAME"
ENV_FLOW_RUN_NAMESPACE = "FLOWPOD_FLOW_RUN_NAMESPACE"
ENV_ENTRYPOINT = "FLOWPOD_ENTRYPOINT"
# Reserved, no longer set: one environment variable is capped at 128 KiB by the kernel, so
# the engine reads the parameters from the API instead (contract.resolve_parameters).
ENV_PARAMETERS = "FLOWPOD_PARAMETERS"
ENV_ATTEMPT = "FLOWPOD_ATTEMPT"
# Where results and the task cache go (default ~/.flowpod/results); users may set it.
ENV_RESULT_DIR = "FLOWPOD_RESULT_DIR"
# The run's result storage, an fsspec URL: the operator sets it from spec.resultStorage (the
# FlowRun's, else its Deployment's); it wins over ENV_RESULT_DIR.
ENV_RESULT_STORAGE = "FLOWPOD_RESULT_STORAGE"
# The address of a running Dask scheduler (tcp://host:8786) for a flow whose task runner is
# a DaskTaskRunner without `address=`; users set it in a Deployment's env. Unset: the runner
# starts a LocalCluster in the flow-run pod.
ENV_DASK_ADDRESS = "FLOWPOD_DASK_ADDRESS"
# The operator reads this container's exit code, reason and logs to explain a crash.
CONTAINER_NAME = "flow"
ENGINE_COMMAND = ("python", "-m", "flowpod.engine")
# Flow-run pods need RBAC on their FlowRun; the Helm chart and examples/flow-run-rbac.yaml
# create a ServiceAccount of this name in each namespace that runs flows.
DEFAULT_SERVICE_ACCOUNT = "flowpod-flow-run"
# Where the kubelet mounts a pod's token, CA and namespace (every in-cluster client reads it).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# -- hooks after a hard kill -----------------------------------------------------------------
# The final hooks that must run even when the flow's process was killed (OOM, SIGKILL, a lost
# node): the operator then runs them in a short hook Job, `python -m flowpod.engine` with
# ENV_HOOKS naming the hook option. Keyed by the final state type (its wire value).
HOOKS_AFTER_KILL = {"CRASHED": "on_crashed", "CANCELLED": "on_cancellation"}
ENV_HOOKS = "FLOWPOD_HOOKS"
# On the hook Job and its pod (instead of flowpod.io/attempt): not an attempt of the run.
LABEL_HOOKS = "flowpod.io/hooks"
# status.hooks: {declared, runner, job, outcome, message}. The engine writes `declared` with
# Running; whoever runs the hooks first claims them by writing `runner` (a resourceVersion
# precondition makes the claim exclusive), so they never run twice.
HOOKS_RUNNER_ENGINE = "Engine"
HOOKS_RUNNER_JOB = "Job"
HOOKS_PENDING = "Pending"
HOOKS_RUNNING = "Running"
HOOKS_SUCCEEDED = "Succeeded"
HOOKS_FAILED = "Failed"
HOOKS_DONE = frozenset({HOOKS_SUCCEEDED, HOOKS_FAILED})


def hook_for_state_type(state_type: str) -> str | None:
    """The hook option a final state type runs after a hard kill (None: no such hooks)."""
    return HOOKS_AFTER_KILL.get(state_type)


# -- status bounds -------------------------------------------------------------------------
# The CRD schema uses the same bounds (maxItems / maxLength), so a status built from these
# always validates. Bounded strings also keep the CEL cost estimate of the state rules small.
MAX_STATE_HISTORY = 20
MAX_MESSAGE_LENGTH = 4096
# Failed task runs and subflow runs listed in status.taskRuns (each list; counts stay exact).
MAX_LISTED_RUNS = 50
# Larger results are stored elsewhere and referenced: the FlowRun must stay far below
# etcd's 1.5 MiB object limit, and `kubectl get -o yaml` readable.
MAX_INLINE_RESULT_BYTES = 4096
# The resolved parameters of a run (the Deployment's defaults overlaid with the FlowRun's),
# as compact JSON. The operator fails a larger run before any pod: spec.parameters is stored
# in the FlowRun (and, with `kubectl apply`, again in its last-applied annotation, which the
# API server caps at 256 KiB), and it must stay far below etcd's 1.5 MiB request limit.
MAX_PARAMETERS_BYTES = 256 * 1024
# The last lines of the flow's output kept in status.logTail when a run ends Failed, Crashed
# or Cancelled, so they outlive the pod. Both bounds apply (the newest lines are kept).
MAX_LOG_TAIL_LINES = 20
MAX_LOG_TAIL_BYTES = 8192
MAX_LOG_LINE_LENGTH = 1024

CONDITION_SUCCEEDED = "Succeeded"
CONDITION_READY = "Ready"
# kstatus' abnormal-true condition: present (True) only while the resource cannot make progress
# until someone changes it; absent otherwise.
CONDITION_STALLED = "Stalled"

# -- pause and resume ----------------------------------------------------------------------
# status.pause: what a Paused or Suspended run waits for, written by the engine with that
# state: {key, inputSchema (JSON schema; absent without input), timeoutAt, suspended,
# refused: {generation, message} (the operator's answer to an invalid spec.resume)}.
STATUS_PAUSE = "pause"
# spec.resume: {key (optional: the current pause), input}, set by `flowpod resume`, kubectl
# or GitOps. The operator validates the input against status.pause.inputSchema.
SPEC_RESUME = "resume"
# status.resumed: the resume the operator accepted, {key, input, generation (metadata.
# generation of the spec.resume it came from)}; the engine returns its input. A spec.resume
# of that generation is spent: a later pause needs a new one.
STATUS_RESUMED = "resumed"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

_TRUNCATED = "… (truncated)"
# RFC 3339 allows nanoseconds; Python's datetime keeps at most microseconds.
_EXTRA_DIGITS = re.compile(r"(\.\d{6})\d+")


# -- flow parameters -----------------------------------------------------------------------
def resolve_parameters(flowrun: Mapping[str, Any],
                       deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's parameters: its Deployment's spec.parameters (defaults) overlaid with the
    FlowRun's spec.parameters. The operator validates exactly this; the engine runs it."""
    defaults = ((deployment or {}).get("spec") or {}).get("parameters") or {}
    return {**defaults, **((flowrun.get("spec") or {}).get("parameters") or {})}


def parameters_size(parameters: Mapping[str, Any]) -> int:
    """Bytes of `parameters` as compact UTF-8 JSON (what MAX_PARAMETERS_BYTES bounds)."""
    return len(json.dumps(parameters, separators=(",", ":"), ensure_ascii=False).encode())


# -- pause and resume ----------------------------------------------------------------------
def pause_wire(key: str, input_schema: Mapping[str, Any] | None, timeout_at: datetime, *,
               suspended: bool = False) -> dict[str, Any]:
    """status.pause as the engine writes it with a Paused or Suspended state."""
    wire: dict[str, Any] = {"key": key, "timeoutAt": format_time(timeout_at),
                            "suspended": suspended}
    if input_schema is not None:
        wire["inputSchema"] = dict(input_schema)
    return wire


def resumed_wire(key: str, run_input: Any, generation: int) -> dict[str, Any]:
    """status.resumed as the operator writes it when it accepts a spec.resume."""
    return {"key": key, "input": run_input, "generation": generation}


def pause_of(flowrun: Mapping[str, Any]) -> dict[str, Any] | None:
    """status.pause of a FlowRun object, or None."""
    return (flowrun.get("status") or {}).get(STATUS_PAUSE) or None


def resume_of(flowrun: Mapping[str, Any]) -> dict[str, Any] | None:
    """spec.resume of a FlowRun object, or None."""
    return (flowrun.get("spec") or {}).get(SPEC_RESUME) or None


def resumed_input(flowrun: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(True, input) when the operator accepted a resume of pause `key` (status.resumed),
    else (False, None)."""
    resumed = (flowrun.get("status") or {}).get(STATUS_RESUMED) or {}
    if resumed.get("key") != key:
        return False, None
    resume = resume_of(flowrun)
    generation = (flowrun.get("metadata") or {}).get("generation")
    if resume is not None and resumed.get("generation") == generation:
        # The very spec.resume accepted: its input as given, nulls included (a status merge
        # patch, which recorded status.resumed, reads a nested null as "delete").
        return True, resume.get("input")
    return True, resumed.get("input")


# -- API paths -----------------------------------------------------------------------------
def resource_path(plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The API path of a flowpod collection (all namespaces when `namespace` is None), one
    object, or its subresource ("status")."""
    path = f"{API_PREFIX}/namespaces/{namespace}/{plural}" if namespace else (
        f"{API_PREFIX}/{plural}")
    if name is not None:
        if namespace is None:
            raise ValueError(f"{plural} are namespaced: a name needs a namespace")
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    elif subresource:
        raise ValueError(f"a subresource of {plural} needs an object name")
    return path


def flowrun_path(namespace: str | None, name: str | None = None,
                 subresource: str | None = None) -> str:
    """The API path of the FlowRun collection, one FlowRun, or its subresource ("status")."""
    return resource_path(FLOWRUNS, namespace, name, subresource)


def deployment_path(namespace: str | None, name: str | None = None,
                    subresource: str | None = None) -> str:
    """The API path of the (flowpod) Deployment collection, one Deployment, or its
    subresource ("status")."""
    return resource_path(DEPLOYMENTS, namespace, name, subresource)


# -- RFC 3339 timestamps -------------------------------------------------------------------
def format_time(moment: datetime, *, fraction: bool = True) -> str:
    """RFC 3339 in UTC with a `Z` suffix: milliseconds, or with `fraction=False` the whole
    seconds of metav1.Time. A naive time is refused: its zone would be a guess."""
    if moment.tzinfo is None:
        raise ValueError(f"time must be timezone-aware (UTC), got naive {moment!r}")
    text = moment.astimezone(timezone.utc).isoformat(
        timespec="milliseconds" if fraction else "seconds")
    return text.replace("+00:00", "Z")


def format_time_exact(moment: datetime) -> str:
    """RFC 3339 in UTC with every microsecond kept, for in-process round trips (State.to_wire:
    journals, the local engine's printed state). A naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (`Z` or an offset; a missing offset means
    UTC; nanoseconds are cut to microseconds). Raises ValueError naming the text."""
    try:
        cleaned = _EXTRA_DIGITS.sub(r"\1", text.replace("Z", "+00:00").replace("z", "+00:00"))
        moment = datetime.fromisoformat(cleaned)
    except (AttributeError, ValueError):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_time_or_none(text: str | None) -> datetime | None:
    """parse_time for readers that must go on without it: None when absent or unusable (a time
    the operator cannot read must not stop it from deciding everything else)."""
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


# -- label values --------------------------------------------------------------------------
_MAX_LABEL_VALUE = 63


def label_value(name: str) -> str:
    """A valid label value for an object name: itself if short enough, else a truncated
    prefix plus a hash of the whole name (stable, so it can be used in selectors)."""
    if len(name) <= _MAX_LABEL_VALUE:
        return name
    head = name[: _MAX_LABEL_VALUE - 9].rstrip("-.")
    return f"{head}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


# -- status strings and the task-run summary -----------------------------------------------
def truncate_message(message: str) -> str:
    """A state or condition message cut to the CRD's MAX_MESSAGE_LENGTH, marked as cut."""
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - len(_TRUNCATED)] + _TRUNCATED


def log_tail(lines: Iterable[str]) -> list[str]:
    """status.logTail: the newest of `lines`, at most MAX_LOG_TAIL_LINES and
    MAX_LOG_TAIL_BYTES (UTF-8) in all, each cut to MAX_LOG_LINE_LENGTH characters."""
    kept: list[str] = []
    size = 0
    for line in reversed(list(lines)[-MAX_LOG_TAIL_LINES:]):
        line = line.rstrip("\r\n")
        if len(line) > MAX_LOG_LINE_LENGTH:
            line = line[: MAX_LOG_LINE_LENGTH - len(_TRUNCATED)] + _TRUNCATED
        size += len(line.encode()) + 1
        if size > MAX_LOG_TAIL_BYTES:
            break
        kept.append(line)
    return kept[::-1]


def listed_run(name: str, state_name: str, message: str) -> dict[str, str]:
    """One entry of status.taskRuns.failed or .subflows: {name, state (its name), message}."""
    return {"name": name, "state": state_name, "message": truncate_message(message)}


def task_runs_wire(*, total: int, counts: Mapping[str, int],
                   failed: Iterable[Mapping[str, str]], failed_total: int,
                   subflows: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """status.taskRuns: totals, counts by state type, and at most MAX_LISTED_RUNS entries
    (see listed_run) of failed task runs and of subflow runs."""
    return {
        "total": total,
        "counts": dict(counts),
        "failed": [dict(entry) for entry in islice(failed, MAX_LISTED_RUNS)],
        "failedTotal": failed_total,
        "subflows": [dict(entry) for entry in islice(subflows, MAX_LISTED_RUNS)],
    }

