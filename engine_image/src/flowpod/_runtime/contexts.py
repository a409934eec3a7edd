"""Run contexts: what the engine knows about the flow run and task run in progress.

Role: the context variables `flow_run_var` / `task_run_var` (the only module-level
state: "which run am I in" is inherently ambient) and the contexts they hold. A
`FlowRunContext` is one flow run: its identity, its fixed `RunServices` (deps, reporter,
limits, stores, loop, ops) and its mutable `RunProgress` (state, current attempt,
interruption bookkeeping). Also `get_run_logger` and the print hook behind `log_prints`.
Callers: every runtime module above this one, and user code through
`flowpod.get_run_logger`.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import sys
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyio import CancelScope, CapacityLimiter
    from anyio.abc import TaskGroup

    from flowpod._runtime.deps import RunDeps, Stores
    from flowpod._runtime.limits import TagLimits
    from flowpod._runtime.ops import AsyncOps, BlockingOps
    from flowpod._runtime.pool import TaskPool
    from flowpod._runtime.records import RunRecord, TaskRunRecord
    from flowpod._runtime.specs import FlowSpec, TaskSpec
    from flowpod._runtime.threads import RunLoop, ThreadCall
    from flowpod.reporting import CancellationCheck, Reporter
    from flowpod.states import State
    from flowpod.task_runners import TaskRunner

__all__ = [
    "RunServices",
    "RunProgress",
    "FlowRunContext",
    "TaskRunContext",
    "flow_run_var",
    "task_run_var",
    "get_run_logger",
    "enable_log_prints",
    "print_logger_var",
    "ensure_console_logging",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunServices:
    """What a flow run works with, fixed for its whole life. A subflow shares its parent's
    tag limits, task limiter and stores, so limits and results span the whole run tree."""

    deps: RunDeps
    reporter: Reporter
    cancel_check: CancellationCheck | None  # "was cancellation requested?" (after SIGTERM)
    tag_limits: TagLimits
    task_limiter: CapacityLimiter  # bounds the sync task workers of the run tree
    stores: Stores
    loop: RunLoop
    blocking_ops: BlockingOps  # drive task cores inline (sync calls, pool workers)
    async_ops: AsyncOps  # drive async task runs on the loop
    task_runner: TaskRunner  # this run's own copy (flowpod._runtime.runners)
    runner_ops: AsyncOps | None  # submitted task runs of a remote runner; None: in-process


@dataclass(eq=False, slots=True)
class RunProgress:
    """What changes while a flow run goes on. Written by the flow engine (state, attempt),
    flowpod._runtime.signals (terminating) and flowpod._runtime.pausing (state)."""

    state: State | None = None  # the last state the reporter accepted
    flushed_version: int = -1  # RunRecord.version at the last summary flush
    # The current attempt: its task group (holds submitted task runs) and worker pool. The
    # pool outlives the attempt, so a late interrupt still reaches its workers.
    task_group: TaskGroup | None = None
    pool: TaskPool | None = None
    # Interruption (timeout, SIGTERM) bookkeeping, see flowpod._runtime.signals.
    terminating: bool = False
    body_call: ThreadCall | None = None  # the running flow body (a LoopCall when async)
    cancel_scopes: set[CancelScope] = field(default_factory=set)
    children: set[FlowRunContext] = field(default_factory=set)  # running subflows


class FlowRunContext:
    """One flow run in progress; built (fully) by flowpod._runtime.flow_engine.

    `parameters` and `name` start as given and are replaced by the validated parameters and
    the rendered run name once checked (`rename`); everything else about identity is fixed.
    `default_name`, when given (in a pod: the FlowRun's name), is the run's name whatever the
    flow's flow_run_name template renders.
    """

    def __init__(self, *, flow: FlowSpec, run_id: str, parameters: dict[str, Any],
                 parent: FlowRunContext | None, services: RunServices,
                 record: RunRecord, default_name: str | None = None) -> None:
        self.flow = flow
        self.id = run_id
        self.default_name = default_name
        self.name = default_name or f"{flow.name}-{run_id[:8]}"
        self.parameters = parameters
        self.parent = parent
        self.services = services
        self.record = record  # its task runs and subflows (kept across retries)
        self.progress = RunProgress()
        self.log_prints = bool(flow.log_prints)
        self.persist_result = bool(flow.persist_result)
        self.logger = logging.LoggerAdapter(
            logging.getLogger("flowpod.flow_runs"),
            {"flow_run_name": self.name, "flow_run_id": run_id})
        self.pause_count = itertools.count(1)  # numbers suspend_flow_run calls without a key
        self._key_counters: dict[str, itertools.count[int]] = {}

    def rename(self, name: str) -> None:
        """Set the run's name, in its log records' `flow_run_name` too."""
        self.name = name
        self.logger.extra = {**(self.logger.extra or {}), "flow_run_name": name}

    def next_task_key(self, task_key: str) -> str:
        """Deterministic task-run key: the task's key plus its call number in this run."""
        counter = self._key_counters.get(task_key)
        if counter is None:
            counter = self._key_counters.setdefault(task_key, itertools.count())
        return f"{task_key}-{next(counter)}"  # next() on count is atomic under the GIL

    def reset_task_keys(self) -> None:
        """A retried attempt numbers its task runs from zero again, to find earlier results."""
        self._key_counters = {}

    def on_loop_thread(self) -> bool:
        return self.services.loop.is_current_thread()


class TaskRunContext:
    """The task run in progress (seen by get_run_logger, cache_key_fn, retry_condition_fn)."""

    __slots__ = ("task", "task_run", "flow_run", "parameters")

    def __init__(self, task: TaskSpec, task_run: TaskRunRecord, flow_run: FlowRunContext | None,
                 parameters: dict[str, Any]) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run = flow_run
        self.parameters = parameters


flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("flowpod_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("flowpod_task_run", default=None)
print_logger_var: ContextVar[logging.LoggerAdapter | None] = ContextVar(
    "flowpod_print_logger", default=None
)


def get_run_logger() -> logging.LoggerAdapter:
    """A logger tagged with the current task run and/or flow run."""
    task_ctx = task_run_var.get()
    flow_ctx = flow_run_var.get()
    if task_ctx is not None:
        extra = {"task_run_name": task_ctx.task_run.name, "task_run_key": task_ctx.task_run.key}
        if flow_ctx is not None:
            extra.update(flow_run_name=flow_ctx.name, flow_run_id=flow_ctx.id)
        return logging.LoggerAdapter(logging.getLogger("flowpod.task_runs"), extra)
    if flow_ctx is not None:
        return flow_ctx.logger
    raise RuntimeError(
        "get_run_logger() was called outside a flow or task run; call it inside a "
        "function decorated with @flow or @task, or use logging.getLogger()."
    )


_original_print = builtins.print
_print_hook_lock = threading.Lock()


def _logging_print(*args: Any, sep: str | None = " ", end: str | None = "\n",
                   file: Any = None, flush: bool = False) -> None:
    target = print_logger_var.get()
    if target is None or file not in (None, sys.stdout):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    target.info((" " if sep is None else sep).join(map(str, args)))


def enable_log_prints() -> None:
    """Route print() to the run logger wherever `print_logger_var` is set.

    The hook is installed once for the process and checks the context variable,
    so concurrent runs with and without log_prints do not fight over builtins.
    """
    with _print_hook_lock:
        if builtins.print is not _logging_print:
            builtins.print = _logging_print


def ensure_console_logging() -> None:
    """Show run logs on stderr when nothing else configured logging (local runs)."""
    logger = logging.getLogger("flowpod")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
