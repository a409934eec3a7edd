"""pause_flow_run and suspend_flow_run: stop a flow run until someone resumes it.

Role: `pause_flow_run(timeout=...)` proposes Paused and waits in-process, polling
the reporter's `read_state()` until the run is Running again (resumed), Cancelling
(then the run is cancelled) or the timeout passes (PausedRunTimeout: the run
fails). `suspend_flow_run()` proposes Suspended and raises the Pause signal, which
ends the flow run (and, in a pod, the process); when the run is started again with
the same id, the same suspend call sees its marker and returns at once, and
tasks with persisted results are skipped. In an async flow both return an
awaitable. Callers: user code via `flowpod`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Coroutine

from flowpod import states
from flowpod._runtime.contexts import FlowRunContext, flow_run_var, task_run_var
from flowpod.errors import Abort, Pause, PausedRunTimeout

__all__ = ["pause_flow_run", "suspend_flow_run"]


def _current_run(action: str) -> FlowRunContext:
    if task_run_var.get() is not None:
        raise RuntimeError(f"{action}() cannot be called inside a task run; call it in the flow.")
    ctx = flow_run_var.get()
    if ctx is None:
        raise RuntimeError(f"{action}() must be called inside a flow run.")
    return ctx


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _without_blocking(call: Any) -> Any:
    # An async flow's body has its own loop: wait for the run's loop in a worker thread,
    # so the body's loop keeps going meanwhile.
    import anyio.to_thread

    return await anyio.to_thread.run_sync(call)


def _dispatch(ctx: FlowRunContext, coro: Coroutine[Any, Any, Any]) -> Any:
    """Awaitable in an async flow; blocking (on the flow's loop) in a sync one."""
    if ctx.on_loop_thread():
        return coro
    import anyio.from_thread

    async def run() -> Any:
        return await coro

    if _in_event_loop():
        return _without_blocking(
            functools.partial(anyio.from_thread.run, run, token=ctx.services.loop.token))
    return anyio.from_thread.run(run, token=ctx.services.loop.token)


def pause_flow_run(timeout: float = 3600, poll_interval: float = 10) -> Any:
    """Pause the current flow run until resumed; fail it if not resumed within timeout s."""
    if timeout <= 0 or poll_interval <= 0:
        raise ValueError(f"timeout ({timeout!r}) and poll_interval ({poll_interval!r}) must be > 0")
    ctx = _current_run("pause_flow_run")
    return _dispatch(ctx, _pause(ctx, timeout, poll_interval))


async def _pause(ctx: FlowRunContext, timeout: float, poll_interval: float) -> None:
    import anyio

    from flowpod._runtime.flow_engine import propose

    clock = ctx.services.deps.clock
    deadline = clock() + timedelta(seconds=timeout)
    await propose(ctx, states.Paused(f"Waiting up to {timeout} s to be resumed",
                                     pause_timeout=deadline))
    asleep = ctx.services.deps.asleep or anyio.sleep
    with anyio.CancelScope() as scope:  # SIGTERM cancels it (see flowpod._runtime.signals)
        ctx.progress.cancel_scopes.add(scope)
        try:
            while (remaining := (deadline - clock()).total_seconds()) > 0:
                await asleep(min(poll_interval, remaining))
                current = await ctx.services.reporter.read_state()
                if current is not None and current.is_running():
                    ctx.progress.state = current
                    ctx.logger.info("Flow run %r resumed", ctx.name)
                    return
                if current is not None and current.is_cancelling():
                    raise Abort("The flow run was cancelled while paused", state=current)
        finally:
            ctx.progress.cancel_scopes.discard(scope)
    if not scope.cancelled_caught:
        raise PausedRunTimeout(f"The flow run was paused for {timeout} s and not resumed")


def suspend_flow_run(timeout: float = 3600, key: str | None = None) -> Any:
    """End the current flow run as Suspended; a later run with the same id continues past it."""
    ctx = _current_run("suspend_flow_run")
    key = key or f"suspend-{next(ctx.pause_count)}"
    results = ctx.services.stores.results
    marker = results.path_for("runs", ctx.id, "suspends", key)
    if results.read(marker)[0]:
        return _dispatch(ctx, _noop())  # suspended here before and since resumed
    return _dispatch(ctx, _suspend(ctx, timeout, marker))


async def _noop() -> None:
    return None


async def _suspend(ctx: FlowRunContext, timeout: float, marker: Any) -> None:
    from flowpod._runtime.flow_engine import propose

    deadline = ctx.services.deps.clock() + timedelta(seconds=timeout)
    proposed = states.Suspended(f"Suspended; resume within {timeout} s", pause_timeout=deadline)
    try:
        accepted = await propose(ctx, proposed)
    except Abort as exc:
        raise RuntimeError(f"The flow run cannot be suspended: {exc}") from None
    ctx.services.stores.results.write(marker, True)
    accepted.data = Pause("Flow run suspended", state=accepted)
    raise accepted.data
