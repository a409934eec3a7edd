"""A flow run's task runner: which one, how long it runs, and how task calls go through it.

Role: the runtime's side of flowpod.task_runners. `for_flow` makes the flow run's own copy
of the flow's runner; `running` starts it before the first attempt and closes it after
the last; `RunnerOps` is the async driver (flowpod._runtime.ops) of submitted task runs
whose runner calls task functions elsewhere (`is_remote`): each attempt is one awaited
`runner.call`, cancelled when the task's timeout passes. The thread pool and the
sequential runner need no ops of their own: their task runs call the function in a thread
of this process (flowpod._runtime.pool, flowpod._runtime.task_calls). Callers:
flowpod._runtime.flow_engine, flowpod._runtime.task_calls.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from flowpod import states
from flowpod._runtime.contexts import task_run_var
from flowpod._runtime.ops import AsyncOps, TaskTimedOut
from flowpod._runtime.pool import TaskPool
from flowpod.task_runners import SequentialTaskRunner, TaskRunner, ThreadPoolTaskRunner

if TYPE_CHECKING:
    from flowpod._runtime.contexts import FlowRunContext
    from flowpod._runtime.deps import RunDeps
    from flowpod._runtime.specs import FlowSpec

__all__ = ["for_flow", "is_remote", "is_sequential", "new_pool", "running", "RunnerOps"]


def for_flow(flow: FlowSpec) -> TaskRunner:
    """The flow run's own, unstarted copy of the flow's task runner."""
    return flow.task_runner.duplicate()


def is_remote(runner: TaskRunner) -> bool:
    """Whether the runner calls task functions outside this process's threads."""
    return not isinstance(runner, (ThreadPoolTaskRunner, SequentialTaskRunner))


def is_sequential(runner: TaskRunner) -> bool:
    return isinstance(runner, SequentialTaskRunner)


def new_pool(ctx: FlowRunContext, run_one: Callable[[Any], None]) -> TaskPool:
    """The worker pool of one attempt. A ThreadPoolTaskRunner with max_workers bounds the
    task runs at once (Prefect's meaning); by default the flow's task_workers bound the
    pool's threads, and a thread waiting on a future runs queued task runs besides, so a
    task run that waits on a later one never deadlocks a full pool."""
    runner = ctx.services.task_runner
    strict = isinstance(runner, ThreadPoolTaskRunner) and runner.max_workers is not None
    return TaskPool(ctx.services.task_limiter, ctx.flow.task_workers, run_one, strict=strict)


@contextlib.asynccontextmanager
async def running(ctx: FlowRunContext) -> AsyncIterator[states.State | None]:
    """The flow run's task runner, started for the block, which gets None, or the Failed
    state of a runner that could not start; closed whatever happens."""
    import anyio

    runner = ctx.services.task_runner
    try:
        try:
            await runner.start()
        except Exception as exc:
            yield states.Failed(f"The flow's task runner {runner!r} could not start: "
                                f"{type(exc).__name__}: {exc}", data=exc)
        else:
            yield None
    finally:
        with anyio.CancelScope(shield=True):  # a stopped run still releases its cluster
            try:
                await runner.close()
            except Exception:
                ctx.logger.warning("Could not close task runner %r", runner, exc_info=True)


class RunnerOps(AsyncOps):
    """Async ops whose `call` goes through a remote task runner."""

    def __init__(self, deps: "RunDeps", runner: TaskRunner) -> None:
        super().__init__(deps)
        self._runner = runner

    async def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
                   timeout: float | None) -> Any:
        context = task_run_var.get()
        name = context.task_run.name if context is not None else getattr(fn, "__name__", "task")
        if timeout is None:
            return await self._runner.call(fn, args, kwargs, name=name)
        with self._anyio.move_on_after(timeout):
            return await self._runner.call(fn, args, kwargs, name=name)
        raise TaskTimedOut()  # reached only when move_on_after cancelled the call
