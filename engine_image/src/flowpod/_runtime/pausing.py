"""pause_flow_run and suspend_flow_run: stop a flow run until someone resumes it.

Role: `pause_flow_run(wait_for_input=..., timeout=...)` proposes Paused with a
`PauseRequest` (its key, the JSON schema of the input it waits for, its deadline) and
waits in-process until the run is Running again (resumed), Cancelling (then the run is
cancelled) or the timeout passes (PausedRunTimeout: the run fails). It waits on the
reporter's `wait_for_change` (in a pod, a watch of the FlowRun) when it has one, else it
polls `read_state`. `suspend_flow_run()` proposes Suspended and raises the Pause signal,
which ends the flow run (and, in a pod, the process); when the run is started again with
the same id, the same suspend call sees its marker in the result store and returns at
once (with the input given on resume, kept in the result store so that every later replay
gets it too; a pause for input passed before a suspension is not paused again on replay),
and tasks with persisted results are skipped.
With `wait_for_input` both return the resume's input validated as that type (a pydantic
model, or any type a pydantic TypeAdapter takes, e.g. `str`). In an async flow both
return an awaitable. Callers: user code via `flowpod`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Coroutine

from flowpod import states
from flowpod._runtime.contexts import FlowRunContext, flow_run_var, task_run_var
from flowpod.errors import Abort, Pause, PausedRunTimeout
from flowpod.reporting import PauseRequest

__all__ = ["pause_flow_run", "suspend_flow_run"]

# A reporter that can wait for a change (a watch) gets this long per wait; one that cannot
# is polled every poll_interval.
_WATCH_SLICE = 300.0


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


def _adapter(wait_for_input: Any) -> Any:
    """A pydantic TypeAdapter of the awaited input type (a model or a plain type), or None."""
    if wait_for_input is None:
        return None
    from pydantic import TypeAdapter

    return TypeAdapter(wait_for_input)


def _request(ctx: FlowRunContext, key: str, adapter: Any, timeout: float,
             suspended: bool = False) -> PauseRequest:
    deadline = ctx.services.deps.clock() + timedelta(seconds=timeout)
    schema = adapter.json_schema() if adapter is not None else None
    return PauseRequest(key, schema, deadline, suspended)


async def _given_input(ctx: FlowRunContext, key: str, adapter: Any) -> Any:
    """The input the resume of pause `key` carried, validated; None without wait_for_input.

    The first time it is read from the reporter it is kept in the result store next to the
    run's suspend markers: a later replay of the run (after another suspension) passes this
    pause again, and the backend then only remembers the latest resume."""
    if adapter is None:
        return None
    results = ctx.services.stores.results
    saved = results.path_for("runs", ctx.id, "resume-inputs", key)
    found, value = results.read(saved)
    if not found:
        reader = getattr(ctx.services.reporter, "resume_input", None)
        found, value = await reader(key) if reader is not None else (False, None)
        if not found:
            raise RuntimeError(f"The flow run was resumed without the input pause {key!r} "
                               f"waits for; resume it with input (flowpod resume RUN --input "
                               f"JSON)")
        results.write(saved, value)
    return adapter.validate_python(value)


def _resumed_before(ctx: FlowRunContext, key: str) -> bool:
    """Whether an earlier process of this run was resumed past pause `key` (a replay)."""
    results = ctx.services.stores.results
    return results.read(results.path_for("runs", ctx.id, "resume-inputs", key))[0]


def pause_flow_run(wait_for_input: Any = None, timeout: float = 3600,
                   poll_interval: float = 10, key: str | None = None) -> Any:
    """Pause the current flow run until resumed; fail it if not resumed within timeout s.
    With `wait_for_input` (a pydantic model or a type such as `str`), return the input
    given on resume, validated as that type."""
    if timeout <= 0 or poll_interval <= 0:
        raise ValueError(f"timeout ({timeout!r}) and poll_interval ({poll_interval!r}) must be > 0")
    ctx = _current_run("pause_flow_run")
    adapter = _adapter(wait_for_input)
    key = key or f"pause-{next(ctx.pause_count)}"
    if adapter is not None and _resumed_before(ctx, key):  # a replay, after a suspension
        return _dispatch(ctx, _given_input(ctx, key, adapter))
    request = _request(ctx, key, adapter, timeout)
    return _dispatch(ctx, _pause(ctx, request, adapter, timeout, poll_interval))


async def _pause(ctx: FlowRunContext, request: PauseRequest, adapter: Any, timeout: float,
                 poll_interval: float) -> Any:
    import anyio

    from flowpod._runtime.flow_engine import propose

    clock, reporter = ctx.services.deps.clock, ctx.services.reporter
    waiting = "for input" if adapter is not None else "to be resumed"
    await propose(ctx, states.Paused(f"Waiting {waiting} up to {timeout} s (pause "
                                     f"{request.key!r})", pause_timeout=request.timeout_at,
                                     data=request))
    wait_for_change = getattr(reporter, "wait_for_change", None)
    asleep = ctx.services.deps.asleep or anyio.sleep
    with anyio.CancelScope() as scope:  # SIGTERM cancels it (see flowpod._runtime.signals)
        ctx.progress.cancel_scopes.add(scope)
        try:
            while (remaining := (request.timeout_at - clock()).total_seconds()) > 0:
                if wait_for_change is not None:
                    await wait_for_change(min(remaining, _WATCH_SLICE))
                else:
                    await asleep(min(poll_interval, remaining))
                current = await reporter.read_state()
                if current is not None and current.is_running():
                    ctx.progress.state = current
                    ctx.logger.info("Flow run %r resumed", ctx.name)
                    return await _given_input(ctx, request.key, adapter)
                if current is not None and current.is_cancelling():
                    raise Abort("The flow run was cancelled while paused", state=current)
        finally:
            ctx.progress.cancel_scopes.discard(scope)
    if not scope.cancelled_caught:
        raise PausedRunTimeout(f"The flow run was paused for {timeout} s and not resumed")


def suspend_flow_run(wait_for_input: Any = None, timeout: float = 3600,
                     key: str | None = None) -> Any:
    """End the current flow run as Suspended; a later run with the same id continues past
    it and, with `wait_for_input`, gets the input given on resume."""
    ctx = _current_run("suspend_flow_run")
    key = key or f"suspend-{next(ctx.pause_count)}"
    adapter = _adapter(wait_for_input)
    results = ctx.services.stores.results
    marker = results.path_for("runs", ctx.id, "suspends", key)
    if results.read(marker)[0]:  # suspended here before and since resumed
        return _dispatch(ctx, _given_input(ctx, key, adapter))
    if not ctx.persist_result:
        ctx.logger.warning("Suspending flow run %r without persist_result: its tasks will run "
                           "again when it resumes (use @flow(persist_result=True))", ctx.name)
    request = _request(ctx, key, adapter, timeout, suspended=True)
    return _dispatch(ctx, _suspend(ctx, request, timeout, marker))


async def _suspend(ctx: FlowRunContext, request: PauseRequest, timeout: float,
                   marker: Any) -> None:
    from flowpod._runtime.flow_engine import propose

    proposed = states.Suspended(f"Suspended (pause {request.key!r}); resume within {timeout} s",
                                pause_timeout=request.timeout_at, data=request)
    try:
        accepted = await propose(ctx, proposed)
    except Abort as exc:
        raise RuntimeError(f"The flow run cannot be suspended: {exc}") from None
    ctx.services.stores.results.write(marker, True)
    accepted.data = Pause("Flow run suspended", state=accepted)
    raise accepted.data
