"""flowpod: run Prefect-style flows as Kubernetes pods -- the engine and SDK.

Role: the public surface users import (`from flowpod import flow, task`). It only
re-exports; the engine proper (flowpod._runtime.flow_engine, flowpod._runtime.task_engine) and
heavy dependencies (anyio, pydantic) load on the first flow run, so importing
flowpod stays fast. Other public modules: flowpod.states (the state machine),
flowpod.reporting (the reporter seam), flowpod.engine (the in-pod entry point),
flowpod.results, flowpod.caching, flowpod.errors.
"""

from flowpod._runtime.annotations import allow_failure, unmapped
from flowpod._runtime.contexts import get_run_logger
from flowpod._runtime.flows import Flow, flow
from flowpod._runtime.futures import FutureList, TaskRunFuture
from flowpod._runtime.pausing import pause_flow_run, suspend_flow_run
from flowpod._runtime.tasks import Task, exponential_backoff, task
from flowpod.caching import task_input_hash
from flowpod.errors import (
    Abort,
    MappingLengthMismatch,
    MappingMissingIterable,
    ParameterValidationError,
    Pause,
    PausedRunTimeout,
    UpstreamTaskError,
)
from flowpod.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    NotReady,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    Suspended,
    TimedOut,
)

__all__ = [
    # decorators and run helpers
    "flow",
    "task",
    "Flow",
    "Task",
    "TaskRunFuture",
    "FutureList",
    "get_run_logger",
    "pause_flow_run",
    "suspend_flow_run",
    "unmapped",
    "allow_failure",
    "exponential_backoff",
    "task_input_hash",
    # states
    "State",
    "StateType",
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Pending",
    "NotReady",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "Paused",
    "Suspended",
    # errors
    "UpstreamTaskError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "ParameterValidationError",
    "PausedRunTimeout",
    "Abort",
    "Pause",
]
