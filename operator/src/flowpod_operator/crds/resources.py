"""Pydantic models of the flowpod custom resources: Deployment and FlowRun (flowpod.io/v1alpha1).

Role: the source of the CRD schemas (flowpod_operator.crds.crdgen turns these models, their field
descriptions and their CEL rules into crds/*.yaml) and typed parsing of objects read from the
API server (the operator and the CLI call `FlowRun.model_validate(obj)`).

Field names are snake_case in Python and camelCase on the wire (aliases). Every field has a
description because `kubectl explain` shows exactly these texts to users. Unknown fields are
ignored when parsing, so an older operator still reads objects written by a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from flowpod import contract, flowruns, states
from flowpod_operator.crds import _cel
from flowpod_operator.crds.pausing import PauseStatus, ResumedStatus, ResumeRequest
from flowpod_operator.crds.hooks import HookRecord
from flowpod_operator.crds.pods import EnvVar, PodTemplate, ResourceRequirements
from flowpod_operator.crds.queues import DeploymentQueueing, FlowRunQueueing
from flowpod_operator.crds.results import ReuseResultsFrom, result_storage_field
from flowpod_operator.crds import retries as _retries
from flowpod_operator.crds.schedules import (ConcurrencyPolicy, DeploymentStatus,
                                             MissedRunPolicy, Schedule)

__all__ = [
    "ResourceRequirements", "EnvVar", "PodTemplate", "DeploymentSpec", "Deployment",
    "FlowRunSpec", "WireState", "FailedTaskRun", "TaskRunSummary", "FlowRunResult",
    "Condition", "FlowRunStatus", "FlowRun", "MAX_FAILED_TASK_RUNS",
]

MAX_FAILED_TASK_RUNS = contract.MAX_LISTED_RUNS
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
_LogLine = Annotated[str, Field(max_length=contract.MAX_LOG_LINE_LENGTH)]
_CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_CONDITION_TYPE = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                   r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _check_entrypoint(value: str | None, field_path: str) -> str | None:
    if value is not None and not _cel.is_valid_entrypoint(value):
        raise ValueError(f"{field_path} {_cel.ENTRYPOINT_HINT}; got {value!r}")
    return value


class DeploymentSpec(DeploymentQueueing):
    """What to run (entrypoint, image) and how (pod overrides, timeouts, retries)."""

    entrypoint: str = Field(
        description="The flow to run: 'path/to/file.py:flow_function' (relative to the "
                    "container's working directory) or 'package.module:flow_function'.",
        min_length=1, max_length=1024,
        json_schema_extra={"x-kubernetes-validations": [_cel.entrypoint_rule("spec.entrypoint")]})
    image: str = Field(description="Container image holding the flow code and flowpod.",
                       min_length=1, max_length=1024)
    pod_template: PodTemplate | None = Field(
        None, description="Overrides for the flow-run pod: resources, env, serviceAccountName, "
                          "nodeSelector, tolerations, volumes, volumeMounts, workingDir.")
    parameters: dict[str, Any] | None = Field(
        None, description="Default flow parameters; a FlowRun's spec.parameters override them "
                          "key by key.", json_schema_extra=_PRESERVE)
    parameter_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of the flow function's parameters. FlowRun parameters "
                          "are validated against it before any pod starts.",
        json_schema_extra=_PRESERVE)
    timeout_seconds: int | None = Field(
        None, ge=1, description="Wall-clock limit of one attempt's pod (the Job's "
                                "activeDeadlineSeconds); when exceeded the run ends Crashed. "
                                "Unset means no limit.")
    cancellation_grace_period_seconds: int = Field(
        30, ge=0, description="Seconds the flow gets between SIGTERM and SIGKILL when its run "
                              "is cancelled.")
    pending_timeout_seconds: int = Field(
        300, ge=1, description="How long a pod may stay unstarted (unschedulable, image pull "
                               "errors, bad config) before the run ends Crashed.")
    retries: int = Field(
        0, ge=0, le=100, description="Infrastructure retries: how many new attempts (new Jobs, "
                                     "one pod at a time) a Crashed run gets. Flow-level retries "
                                     "are configured on the flow itself.")
    concurrency_limit: int | None = Field(
        None, ge=1, description="At most this many runs of this Deployment hold a slot at "
                                "once (Pending, Running, Cancelling or Paused). Unset means "
                                "no limit; 0 is refused.")
    collision_strategy: Literal["Enqueue", "CancelNew"] = Field(
        "Enqueue", description="What a due run does when concurrencyLimit is reached: "
                               "Enqueue waits in Scheduled (AwaitingConcurrencySlot) and starts "
                               "when a slot frees, oldest first; CancelNew ends it Cancelled.")
    successful_runs_history_limit: int = Field(
        10, ge=0, description="How many Completed runs of this Deployment to keep; older ones "
                              "(by endTime) are deleted, with their Jobs and pods.")
    failed_runs_history_limit: int = Field(
        5, ge=0, description="How many Failed, Crashed or Cancelled runs of this Deployment to "
                             "keep; older ones (by endTime) are deleted.")
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Default of spec.ttlSecondsAfterFinished for this "
                                "Deployment's runs.")
    schedules: list[Schedule] | None = Field(
        None, max_length=50, description="When the operator starts runs by itself: cron, "
                                         "interval or rrule entries. Each run is named "
                                         "<deployment>-<slug>-<epoch seconds> of its due time.")
    paused: bool = Field(False, description="Set to true to stop all schedules; runs already "
                                            "started are not touched.")
    missed_run_policy: MissedRunPolicy = Field(
        "RunLatest", description="Due times missed while the operator was down or the clock "
                                 "jumped: RunLatest starts the latest one only, RunAll starts "
                                 "each (at most 100), Skip starts none.")
    starting_deadline_seconds: int | None = Field(
        None, ge=0, description="A due time more than this many seconds past is missed, "
                                "whatever missedRunPolicy says (as a CronJob's). Unset means "
                                "no deadline.")
    concurrency_policy: ConcurrencyPolicy = Field(
        "Allow", description="When a scheduled run is due while another scheduled run of this "
                             "Deployment is not final: Allow starts it, Forbid skips this due "
                             "time, Replace cancels the live run (spec.cancel) and starts it.")
    result_storage: str | None = result_storage_field("Deployment")
    retry_policy: _retries.RetryPolicy | None = _retries.retry_policy_field()

    @field_validator("entrypoint")
    @classmethod
    def check_entrypoint(cls, value: str | None) -> str | None:
        return _check_entrypoint(value, "spec.entrypoint")


class Deployment(_Model):
    """A flow that can be run many times: entrypoint, image, defaults (kind Deployment)."""

    api_version: str = Field(contract.API_VERSION, description=contract.API_VERSION)
    kind: str = Field(contract.KIND_DEPLOYMENT, description="Deployment")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard metadata.")
    spec: DeploymentSpec = Field(description="What to run and how.")
    status: DeploymentStatus | None = Field(
        None, description="What the operator's scheduler observed; written by the operator.")


class FlowRunSpec(FlowRunQueueing):
    """One run of a flow: of a Deployment (deploymentName) or ad hoc (entrypoint + image)."""

    deployment_name: str | None = Field(
        None, min_length=1, max_length=253,
        description="Name of the flowpod Deployment (same namespace) to run. Mutually exclusive "
                    "with entrypoint/image.")
    entrypoint: str | None = Field(
        None, min_length=1, max_length=1024,
        description="Ad-hoc run: the flow, 'path/to/file.py:flow_function' or "
                    "'package.module:flow_function'. Requires image; excludes deploymentName.",
        json_schema_extra={"x-kubernetes-validations": [_cel.entrypoint_rule("spec.entrypoint")]})
    image: str | None = Field(
        None, min_length=1, max_length=1024,
        description="Ad-hoc run: the container image. Requires entrypoint.")
    parameters: dict[str, Any] | None = Field(
        None, description=f"Flow parameters (a JSON object), merged over the Deployment's "
                          f"defaults and validated before the run starts. At most "
                          f"{contract.MAX_PARAMETERS_BYTES // 1024} KiB as JSON, defaults "
                          f"included (a larger run ends Failed before any pod): pass large "
                          f"inputs by reference.",
        json_schema_extra=_PRESERVE)
    scheduled_time: datetime | None = Field(
        None, description="When to start the run (RFC 3339). Unset or past means now.")
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the run (with its Jobs and pods) this many seconds "
                                "after it ends. Unset: the Deployment's value, else the "
                                "operator's --ttl-seconds-after-finished, else kept (within "
                                "the Deployment's history limits).")
    result_storage: str | None = result_storage_field("FlowRun")
    reuse_results_from: ReuseResultsFrom | None = Field(
        None, description="Reuse the persisted task results of this earlier run (set by "
                          "`flowpod retry --from-failure`): a task whose result it kept is "
                          "not run again. Needs spec.resultStorage (here or on the "
                          "Deployment) to be where that run kept them.")
    cancel: bool = Field(
        False, description="Set to true to cancel the run: it goes Cancelling, its pod gets "
                           "SIGTERM, and it ends Cancelled. The only field that may change "
                           "after creation, and only from false to true.")
    resume: ResumeRequest | None = Field(
        None, description="Resume a Paused or Suspended run, with the input it waits for "
                          "(`flowpod resume` sets it). May be set only while the run is "
                          "paused; the operator validates the input first.")

    @field_validator("entrypoint")
    @classmethod
    def check_entrypoint(cls, value: str | None) -> str | None:
        return _check_entrypoint(value, "spec.entrypoint")

    @model_validator(mode="after")
    def check_one_form(self) -> "FlowRunSpec":
        deployment = self.deployment_name is not None
        adhoc = self.entrypoint is not None and self.image is not None
        partial = (self.entrypoint is None) != (self.image is None)
        if deployment == adhoc or partial:
            raise ValueError(_cel.flowrun_form_rule()["message"])
        return self


class WireState(_Model):
    """A run state as stored in the FlowRun status."""

    type: states.StateType = Field(
        description="The state type: SCHEDULED, PENDING, RUNNING, PAUSED, CANCELLING (not "
                    "final) or COMPLETED, FAILED, CRASHED, CANCELLED (final, never left).")
    name: str = Field(min_length=1, max_length=128,
                      description="The state name, e.g. Late, AwaitingRetry, Retrying, "
                                  "TimedOut, Cached; equal to the title-cased type by default.")
    message: str = Field("", max_length=contract.MAX_MESSAGE_LENGTH,
                         description="Human-readable detail, e.g. the error of a Failed run.")
    timestamp: datetime = Field(description="When the run entered this state (RFC 3339).")

    def to_state(self) -> states.State:
        return flowruns.state_from_wire(self.model_dump(mode="json", by_alias=True))


class FailedTaskRun(_Model):
    """A task run (or subflow run) and how it ended."""

    name: str = Field(description="The task run's (or subflow run's) name.")
    state: str | None = Field(None, description="Its state name, e.g. Failed, TimedOut, "
                                                "NotReady, Completed.")
    message: str = Field("", max_length=contract.MAX_MESSAGE_LENGTH,
                         description="Its state's message (for a failure, the error).")


class TaskRunSummary(_Model):
    """Aggregated task runs of the flow run, written by the engine in batches."""

    total: int | None = Field(None, ge=0, description="Number of task runs so far.")
    counts: dict[str, int] | None = Field(
        None, description="Number of task runs by state type, e.g. {COMPLETED: 9, FAILED: 1}.")
    failed: list[FailedTaskRun] | None = Field(
        None, max_length=MAX_FAILED_TASK_RUNS,
        description=f"Task runs that failed, crashed or never ran, with their messages (the "
                    f"first {MAX_FAILED_TASK_RUNS}).")
    failed_total: int | None = Field(None, ge=0, description="Number of such task runs, "
                                                             "including those not listed.")
    subflows: list[FailedTaskRun] | None = Field(
        None, max_length=MAX_FAILED_TASK_RUNS,
        description="Child flow runs called by this flow, with their states.")


class FlowRunResult(_Model):
    """The flow's return value: inline when it is small JSON, a reference into the run's
    result storage, or a note that it was not kept and why (exactly one of them)."""

    value: Any = Field(None, description="The return value as JSON, when small.",
                       json_schema_extra=_PRESERVE)
    reference: str | None = Field(
        None, max_length=4096,
        description="URL of the return value (pickled) in spec.resultStorage, when it is too "
                    "large for the status or not JSON.")
    not_kept: str | None = Field(
        None, max_length=1024,
        description=f"Why the return value was not kept: it is larger than "
                    f"{contract.MAX_INLINE_RESULT_BYTES} bytes as JSON, or not JSON at all, "
                    f"and the run has no spec.resultStorage (a file in the pod would be "
                    f"deleted with it).")


class Condition(_Model):
    """A metav1.Condition: what kubectl wait and kstatus read."""

    type: str = Field(max_length=316, pattern=_CONDITION_TYPE,
                      description="Condition type: Succeeded, Ready or Stalled.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from.")
    last_transition_time: datetime = Field(
        description="When status last changed (not when it was last written).")
    reason: str = Field(min_length=1, max_length=1024, pattern=_CONDITION_REASON,
                        description="CamelCase reason: the state name, e.g. Completed, Crashed.")
    message: str = Field(max_length=32768, description="Human-readable detail.")


class FlowRunStatus(_Model):
    """Observed state of the run, written by the operator and by the engine in the pod."""

    state: WireState | None = Field(
        None, description="Current state. Transitions are checked by the API server: a final "
                          "state never changes, CANCELLING only becomes CANCELLED.",
        json_schema_extra={"x-kubernetes-validations": [_cel.state_transition_rule()]})
    state_history: list[WireState] | None = Field(
        None, max_length=contract.MAX_STATE_HISTORY,
        description=f"Previous and current states, newest last (the last "
                    f"{contract.MAX_STATE_HISTORY}).")
    job_name: str | None = Field(None, description="The Job of the current attempt.")
    pod_name: str | None = Field(None, description="The pod of the current attempt. Like "
                                                   "exitCode and reason, it may still be "
                                                   "recorded once after the run is final.")
    attempt: int | None = Field(None, ge=1, description="Infrastructure attempt, from 1.")
    memory: list[_retries.AttemptMemory] | None = _retries.memory_field()
    start_time: datetime | None = Field(None, description="When the run first became RUNNING.")
    end_time: datetime | None = Field(None, description="When the run reached a final state.")
    duration: str | None = Field(None, description="endTime - startTime, e.g. 1.5s or 2m03s.")
    exit_code: int | None = Field(None, description="Exit code of the flow container, when "
                                                    "it terminated. The engine writes the "
                                                    "final state before its process exits, so "
                                                    "the operator may record this once after "
                                                    "the run is final.")
    reason: str | None = Field(None, description="Why the pod ended, e.g. OOMKilled, Evicted, "
                                                 "DeadlineExceeded, ImagePullBackOff. May be "
                                                 "recorded once after the run is final, and "
                                                 "then corrected once to DeadlineExceeded "
                                                 "(the Job reports its deadline after the "
                                                 "pod has ended).")
    task_runs: TaskRunSummary | None = Field(None, description="Summary of the task runs.")
    result: FlowRunResult | None = Field(
        None, description="The flow's return value (inline JSON), or why it was not kept.",
        # CEL cannot see an untyped (any JSON) field, so "not both" is a property count.
        json_schema_extra={"maxProperties": 1})
    log_tail: list[_LogLine] | None = Field(
        None, max_length=contract.MAX_LOG_TAIL_LINES,
        description=f"The last lines of the flow's output (at most "
                    f"{contract.MAX_LOG_TAIL_LINES} lines and {contract.MAX_LOG_TAIL_BYTES} "
                    f"bytes), kept when the run ends Failed, Crashed or Cancelled and written "
                    f"with that final state, because the pod's log is deleted with the pod. "
                    f"`flowpod logs` shows them once the pod is gone.")
    hooks: HookRecord | None = Field(
        None, description="The on_crashed and on_cancellation hooks and whether they ran; "
                          "after a hard kill the operator runs them in a hook Job.")
    flow_run_name: str | None = Field(None, description="The run name the flow rendered "
                                                        "(flow_run_name template).")
    pause: PauseStatus | None = Field(None, description="What a Paused or Suspended run "
                                                        "waits for (written by the engine).")
    resumed: ResumedStatus | None = Field(None, description="The last resume the operator "
                                                            "accepted, with its input.")
    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec this status reflects.")
    conditions: list[Condition] | None = Field(
        None, description="Succeeded (True/False once final) and Ready (True when Completed), "
                          "for kubectl wait --for=condition=Succeeded and kstatus.",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]})


class FlowRun(_Model):
    """One run of a flow (kind FlowRun)."""

    api_version: str = Field(contract.API_VERSION, description=contract.API_VERSION)
    kind: str = Field(contract.KIND_FLOW_RUN, description="FlowRun")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard metadata.")
    spec: FlowRunSpec = Field(description="What to run. Immutable once created (the API "
                                          "server refuses changes), except cancel: false "
                                          "to true, and resume while the run is paused.")
    status: FlowRunStatus | None = Field(
        None, description="What happened. Frozen once the state is final (COMPLETED, FAILED, "
                          "CRASHED, CANCELLED): only exitCode, reason and podName may still "
                          "be recorded where missing, and the hook record (hooks) until "
                          "its outcome is Succeeded or Failed.")
