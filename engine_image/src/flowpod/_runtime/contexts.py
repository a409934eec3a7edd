"""Run contexts: what the engine knows about the flow run and task run in progress.

Role: the context variables `flow_run_var` / `task_run_var` (the only module-level
state: "which run am I in" is inherently ambient), the `FlowRunContext` and
`TaskRunContext` they hold, the injectable `RunDeps`, `get_run_logger`, and the
print hook behind `log_prints`. Callers: every engine module (flowpod._runtime.flow_engine,
flowpod._runtime.task_engine, flowpod._runtime.tasks, flowpod._runtime.flows, flowpod._runtime.pausing) and user
code through `flowpod.get_run_logger`.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import sys
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from flowpod._runtime.limits import TagLimits
    from flowpod._runtime.records import RunRecord, TaskRunRecord
    from flowpod.reporting import Reporter

__all__ = [
    "RunDeps",
    "FlowRunContext",
    "TaskRunContext",
    "flow_run_var",
    "task_run_var",
    "get_run_logger",
    "enable_log_prints",
    "print_logger_var",
    "ensure_console_logging",
    "default_result_dir",
]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_result_dir() -> Path:
    """Where results and cache entries go unless a run says otherwise."""
    import os

    from flowpod.contract import ENV_RESULT_DIR

    return Path(os.environ.get(ENV_RESULT_DIR) or Path.home() / ".flowpod" / "results")


@dataclass(frozen=True, slots=True)
class RunDeps:
    """Things a flow run gets from outside, so tests can replace them.

    clock: aware-UTC "now" (state timestamps, cache expiry, pause deadlines).
    sleep / asleep: how retry delays and pause polls wait, in blocking and async code.
    result_dir: root of persisted results and the task cache.
    flush_interval: seconds between task-run summary flushes to the reporter.
    """

    clock: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] | None = None  # None: anyio.sleep
    result_dir: Path = field(default_factory=default_result_dir)
    flush_interval: float = 2.0


class FlowRunContext:
    """Everything about one flow run in progress; built by flowpod._runtime.flow_engine."""

    def __init__(self, *, flow: Any, run_id: str, name: str, parameters: dict[str, Any],
                 parent: "FlowRunContext | None", record: "RunRecord", deps: RunDeps,
                 reporter: "Reporter", tag_limits: "TagLimits", token: Any,
                 task_limiter: Any, stores: Any) -> None:
        self.flow = flow
        self.id = run_id
        self.name = name
        self.parameters = parameters
        self.parent = parent
        self.record = record
        self.deps = deps
        self.reporter = reporter
        self.tag_limits = tag_limits
        self.token = token  # anyio EventLoopToken of the loop driving this run
        self.loop_thread = threading.get_ident()
        self.task_limiter = task_limiter
        self.stores = stores  # flowpod._runtime.task_engine.Stores (results + cache)
        self.task_group: Any = None  # set per attempt; holds submitted task runs
        self.log_prints = bool(flow.log_prints)
        self.persist_result = bool(flow.persist_result)
        self.logger = logging.LoggerAdapter(
            logging.getLogger("flowpod.flow_runs"), {"flow_run_name": name, "flow_run_id": run_id}
        )
        self._key_counters: dict[str, itertools.count[int]] = {}
        self.pause_count = itertools.count(1)
        # Interruption (timeout, SIGTERM) bookkeeping, see flowpod._runtime.flow_engine.
        self.body_thread: int | None = None
        self.cancel_scopes: set[Any] = set()
        self.children: set[FlowRunContext] = set()
        self.terminating = False
        self.body_call: Any = None  # flowpod._runtime.threads.ThreadCall of a running sync body
        # Filled in by flowpod._runtime.flow_engine right after construction:
        self.state: Any = None  # last state the reporter accepted
        self.cancel_check: Any = None  # answers "was cancellation requested?"
        self.blocking_ops: Any = None
        self.async_ops: Any = None
        self.flushed_version = -1
        self.loop: Any = None  # the asyncio loop behind `token`, for thread-safe wake-ups
        self.pool: Any = None  # flowpod._runtime.pool.TaskPool of the current attempt

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
        return threading.get_ident() == self.loop_thread


class TaskRunContext:
    """The task run in progress (seen by get_run_logger, cache_key_fn, retry_condition_fn)."""

    __slots__ = ("task", "task_run", "flow_run", "parameters")

    def __init__(self, task: Any, task_run: "TaskRunRecord", flow_run: FlowRunContext | None,
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
