"""Calling a flow like a function: pick the loop and thread to run it on.

Role: `call_flow` is what `Flow.__call__` does. A top-level sync flow gets a fresh
anyio loop in the calling thread; a sync subflow called from a sync flow body (a
worker thread) runs on its parent's loop; a sync flow called where a loop is
already running (an async flow body, a notebook) gets its own loop in a helper
thread; an async flow returns a coroutine for the caller to await. Results are
unwrapped here: value, exception, or final State with `return_state=True`.
Callers: flowpod._runtime.flows.Flow.__call__.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import anyio
import anyio.from_thread

from flowpod import states
from flowpod._runtime.contexts import FlowRunContext, ensure_console_logging, flow_run_var
from flowpod._runtime.flow_engine import run_flow
from flowpod._runtime.threads import ThreadCall, wait_event

__all__ = ["call_flow"]


def call_flow(flow: Any, parameters: dict[str, Any], return_state: bool) -> Any:
    parent = flow_run_var.get()
    if flow.is_async:
        return _call_async(flow, parameters, return_state)
    run = functools.partial(run_flow, flow, parameters, parent=parent)
    if parent is not None and not parent.on_loop_thread():
        state = anyio.from_thread.run(run, token=parent.services.loop.token)
    elif _loop_running_here():
        state = _run_in_helper_thread(run)
    else:
        if parent is None:
            ensure_console_logging()
        state = anyio.run(run)
    return unwrap(state, return_state)


async def _call_async(flow: Any, parameters: dict[str, Any], return_state: bool) -> Any:
    parent: FlowRunContext | None = flow_run_var.get()
    if parent is None:
        ensure_console_logging()
    state = await run_flow(flow, parameters, parent=parent)
    return unwrap(state, return_state)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_helper_thread(run: Any) -> states.State:
    # Blocks the calling loop, like calling any sync function would.
    call = ThreadCall(anyio.run, (run,), name="flowpod-subflow-loop").start()
    wait_event(call.done)
    return call.outcome()


def unwrap(state: states.State, return_state: bool) -> Any:
    """The caller's view of a finished flow run."""
    error = state.data
    # A crash (KeyboardInterrupt, SIGTERM's TerminationSignal) keeps unwinding the
    # caller even when it asked for the state: the process is meant to stop.
    if isinstance(error, BaseException) and not isinstance(error, Exception):
        raise error
    if return_state:
        return state
    return state.result()
