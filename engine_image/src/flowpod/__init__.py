"""flowpod: Prefect-style flows in Python, each flow run a Kubernetes pod.

Decorate functions with `@flow` and `@task`. Called directly, a flow runs right here,
in this process. Created as a FlowRun in a cluster (kubectl, Helm, GitOps or the
`flowpod` CLI), it runs in a pod that the flowpod operator starts, and its state,
task-run summary and result appear in the FlowRun's status.

Example::

    from flowpod import flow, task

    @task(retries=2, retry_delay_seconds=1)
    def fetch(day: str) -> list[int]:
        return [1, 2, 3]

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow(log_prints=True)
    def daily_report(day: str = "monday") -> int:
        result = total(fetch(day))
        print(f"{day}: {result}")
        return result

    assert daily_report("tuesday") == 6

Main names:

- `flow`, `task` and the `Flow`, `Task` they make; `task.submit(...)` and
  `task.map(...)` start task runs concurrently and return a `TaskRunFuture` or a
  `FutureList`; `unmapped` and `allow_failure` adjust single arguments.
- `run_deployment` / `arun_deployment`: start a run of a Deployment in its own pod and
  wait for its final state (flowpod.deployment_runs).
- `get_run_logger`, `pause_flow_run`, `suspend_flow_run`, `exponential_backoff`,
  `task_input_hash` (a ready-made `cache_key_fn`).
- `State`, `StateType` and the state constructors (`Completed`, `Failed`, `Crashed`,
  ...): a flow or task may return one to set its own outcome.
- Errors: `UpstreamTaskError`, `ParameterValidationError`, `PausedRunTimeout`, ...

More in the submodules: flowpod.task_runners (`@flow(task_runner=...)`: the thread pool,
sequential, Dask), flowpod.states (the state machine), flowpod.engine (run one
flow run; `python -m flowpod.engine`), flowpod.reporting (where states go),
flowpod.results, flowpod.caching, flowpod.errors, and flowpod.contract (the names the
engine shares with the operator). `flowpod.__version__` is the installed version.
`import flowpod` stays light: the engine and its dependencies load on the first run.
"""

from typing import Any

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
    "run_deployment",
    "arun_deployment",
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


def __getattr__(name: str) -> Any:
    # run_deployment loads the HTTP client on first use: most flows never start another run.
    if name in ("run_deployment", "arun_deployment"):
        from flowpod import deployment_runs

        return getattr(deployment_runs, name)
    # __version__ is computed on first use: importlib.metadata costs more to import than
    # the rest of `import flowpod`.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("flowpod")
        except PackageNotFoundError:  # a source tree on sys.path, not installed
            return "0+unknown"
    raise AttributeError(f"module 'flowpod' has no attribute {name!r}")
