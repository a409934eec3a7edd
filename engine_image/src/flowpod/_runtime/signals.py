"""SIGTERM handling and interruption of a flow run tree.

Role: `watch_sigterm` (a background task of a top-level flow run on the main
thread) turns SIGTERM into `interrupt_run`: mark the run terminating, cancel its
cancel scopes, interrupt its sync body thread, and do the same for running
subflows. The flow engine then decides between Cancelled (cancellation was
requested) and Crashed (flowpod._runtime.flow_engine, `_finish_terminated`).
`interrupt_run` also serves flow timeouts. Callers: flowpod._runtime.flow_engine.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from flowpod._runtime.contexts import FlowRunContext

__all__ = ["watch_sigterm", "interrupt_run", "can_watch_signals"]


def can_watch_signals() -> bool:
    # The event loop can only install signal handlers on the main thread.
    return threading.current_thread() is threading.main_thread()


def interrupt_run(ctx: FlowRunContext, terminating: bool) -> None:
    """Stop a flow run (and its subflows) now; safe to call from any thread."""
    progress = ctx.progress
    if terminating:
        progress.terminating = True
    for child in list(progress.children):
        interrupt_run(child, terminating)
    _on_loop(ctx, _cancel_scopes, ctx)
    body, pool = progress.body_call, progress.pool
    if body is not None:
        body.interrupt()
    if pool is not None:
        pool.interrupt()


def _cancel_scopes(ctx: FlowRunContext) -> None:
    for scope in list(ctx.progress.cancel_scopes):
        scope.cancel()


def _on_loop(ctx: FlowRunContext, fn: Any, *args: Any) -> None:
    # Cancel scopes are not thread-safe: touch them only from their loop's thread. Posted,
    # not waited for: a subflow's loop may be an async body's, busy blocking on a future
    # that only this interruption will end.
    if ctx.on_loop_thread():
        fn(*args)
        return
    try:
        ctx.services.loop.loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # that loop already closed; nothing left to cancel


async def watch_sigterm(ctx: FlowRunContext, *, task_status: Any) -> None:
    """Until cancelled, turn SIGTERM into an interruption of the run (once)."""
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as received:
        task_status.started()
        async for _ in received:
            if not ctx.progress.terminating:  # repeated SIGTERMs change nothing
                ctx.logger.warning("Received SIGTERM; stopping flow run %r", ctx.name)
                interrupt_run(ctx, terminating=True)
