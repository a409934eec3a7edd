"""Exceptions raised by flowpod, to users and between engine layers.

Role: the one place every flowpod error type is defined. Users see them through
`flowpod` (re-exported); the engine modules (flowpod._runtime.flow_engine,
flowpod._runtime.task_engine, flowpod._runtime.futures, flowpod._runtime.tasks), the reporters
(flowpod.reporting, flowpod.engine._kubereporter) and the in-pod entry point
(flowpod.engine) raise and catch them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowpod.states import State

__all__ = [
    "FlowpodError",
    "UpstreamTaskError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "ParameterValidationError",
    "EntrypointError",
    "PausedRunTimeout",
    "TaskRunCrashed",
    "Abort",
    "Pause",
    "TerminationSignal",
]


class FlowpodError(Exception):
    """Base class of flowpod's user-facing errors."""


class UpstreamTaskError(FlowpodError):
    """A task run did not start because a task it depends on did not complete."""


class MappingLengthMismatch(FlowpodError):
    """`.map()` got iterables of different lengths."""


class MappingMissingIterable(FlowpodError):
    """`.map()` got no iterable argument to map over."""


class ParameterValidationError(FlowpodError):
    """Flow parameters do not match the flow's signature."""


class EntrypointError(FlowpodError):
    """An entrypoint (`path/file.py:fn` or `package.module:fn`) could not be loaded."""


class PausedRunTimeout(FlowpodError):
    """A paused flow run was not resumed before its pause timeout."""


class TaskRunCrashed(FlowpodError):
    """Raised by a task runner when what ran a task's function was lost (a Dask worker
    that died more often than the scheduler allows): the task run ends Crashed, with this
    message, and is not retried by its own `retries` (the runner retried already)."""


class Abort(Exception):
    """Signal: the backend refused a state, so the run must stop (not a crash).

    `state` is the backend's current state when it is known (for example the run is
    already terminal or Cancelling).
    """

    def __init__(self, message: str = "", state: "State | None" = None) -> None:
        super().__init__(message)
        self.state = state


class Pause(Exception):
    """Signal: the flow run was suspended and its process should end (not a crash)."""

    def __init__(self, message: str = "", state: "State | None" = None) -> None:
        super().__init__(message)
        self.state = state


class TerminationSignal(SystemExit):
    """Raised after a SIGTERM was handled, so the process exits with 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
