"""What the engines need of a flow and of a task: the two protocols they are written against.

Role: `FlowSpec` and `TaskSpec` name exactly the attributes the lower runtime layers read
of a `Flow` (flowpod._runtime.flows) and a `Task` (flowpod._runtime.tasks). Flow and Task
satisfy them structurally; the engines never import the user-facing classes, which sit
above them (ARCHITECTURE.md, "Package layers"). Types only: nothing here runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    import inspect

    from flowpod._runtime.parameters import ParameterSpec
    from flowpod.task_runners import TaskRunner

__all__ = ["FlowSpec", "TaskSpec"]


class FlowSpec(Protocol):
    """A flow as the flow engine runs it: options, hooks, parameters and run names."""

    fn: Callable[..., Any]
    name: str
    is_async: bool
    parameters: "ParameterSpec"
    retries: int
    retry_delay_seconds: float
    timeout_seconds: float | None
    log_prints: bool
    persist_result: bool
    task_workers: int
    task_runner: "TaskRunner"
    tag_limits: Mapping[str, int]
    hooks: Mapping[str, list[Callable[..., Any]]]

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]: ...

    def render_run_name(self, parameters: Mapping[str, Any], run_id: str,
                        default: str | None = None) -> str: ...


class TaskSpec(Protocol):
    """A task as the task engine runs it: options, naming, and argument binding."""

    fn: Callable[..., Any]
    name: str
    task_key: str
    tags: frozenset[str]
    is_async: bool
    signature: "inspect.Signature"
    retries: int
    retry_delay_seconds: Any  # seconds, a list of them, or a callable giving the list
    retry_jitter_factor: float | None
    retry_condition_fn: Callable[..., bool] | None
    timeout_seconds: float | None
    cache_key_fn: Callable[..., Any] | None
    cache_expiration: timedelta | None
    refresh_cache: bool
    persist_result: bool | None
    log_prints: bool | None
    task_run_name: Any  # a format string or a callable
    needs_parameters: bool

    def bind_parameters(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]: ...

    def render_run_name(self, parameters: dict[str, Any]) -> str: ...
