"""The flow-run engine: one anyio core that runs a flow run from start to final state.

Role: `run_flow` validates parameters, proposes states through the reporter
(flowpod.reporting), runs attempts (retries, timeout, hooks), executes the body
in a daemon thread (sync: interruptible; async: on its own event loop, cancelled
when interrupted), so the run's loop stays free for submitted tasks, summary
flushes, pause polling and SIGTERM, and a body may block on a future), derives
the final state, flushes the task-run summary in batches, and turns SIGTERM into
Cancelled or Crashed. Crash semantics: user exceptions -> Failed; other
BaseExceptions -> Crashed; Abort / Pause are signals. Callers: flowpod._runtime.flow_calls
(`my_flow(...)`), flowpod.engine.run_flow_run, flowpod._runtime.pausing (propose).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import signal
import uuid
from datetime import timedelta
from typing import Any, Mapping

import anyio

from flowpod import states
from flowpod._runtime.contexts import (
    FlowRunContext,
    RunServices,
    enable_log_prints,
    flow_run_var,
    print_logger_var,
)
from flowpod._runtime.deps import RunDeps, Stores
from flowpod._runtime.futures import TaskRunFuture
from flowpod._runtime import hooks, runners
from flowpod._runtime.limits import TagLimits
from flowpod._runtime.ops import AsyncOps, BlockingOps
from flowpod._runtime.records import RunRecord
from flowpod._runtime.signals import can_watch_signals, interrupt_run, watch_sigterm
from flowpod._runtime.specs import FlowSpec
from flowpod._runtime.task_calls import run_pooled
from flowpod._runtime.threads import LoopCall, RunLoop, ThreadCall
from flowpod.errors import Abort, Pause, ParameterValidationError, TerminationSignal
from flowpod.reporting import CancellationCheck, InMemoryReporter, Reporter

__all__ = ["run_flow", "propose", "run_hooks_alone"]

_FINAL_HOOKS = {
    states.StateType.COMPLETED: "on_completion",
    states.StateType.FAILED: "on_failure",
    states.StateType.CRASHED: "on_crashed",
    states.StateType.CANCELLED: "on_cancellation",
}


class _Outcome:
    __slots__ = ("value", "error")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


async def run_flow(flow: FlowSpec, parameters: Mapping[str, Any], *,
                   reporter: Reporter | None = None, cancel_check: CancellationCheck | None = None,
                   deps: RunDeps | None = None, parent: FlowRunContext | None = None,
                   run_id: str | None = None, tag_limits: Mapping[str, int] | None = None,
                   handle_sigterm: bool = True, run_name: str | None = None) -> states.State:
    """Run one flow run on the current anyio loop; return its final (or Suspended) state.
    `run_name` names the run even when the flow has a flow_run_name template (in a pod it is
    the FlowRun's name, so log lines and `kubectl get flowruns` agree); the template is still
    rendered, so a broken one fails the run wherever it runs."""
    ctx = _new_context(flow, parameters, reporter, cancel_check, deps, parent, run_id, tag_limits,
                       run_name)
    if parent is not None:
        parent.progress.children.add(ctx)
    try:
        async with anyio.create_task_group() as background:
            if parent is None:
                background.start_soon(_flush_periodically, ctx)
                if handle_sigterm and can_watch_signals():
                    await background.start(watch_sigterm, ctx)
            try:
                state = await _run(ctx, parameters)
            except BaseException as exc:  # cancelled from outside (Ctrl-C), engine failure
                with anyio.CancelScope(shield=True):
                    await _report_crash(ctx, exc)
                raise
            finally:
                background.cancel_scope.cancel()
    finally:
        if parent is not None:
            parent.progress.children.discard(ctx)
    if parent is not None:
        parent.record.add_subflow(ctx.name, ctx.id, state)
    return state


async def run_hooks_alone(flow: FlowSpec, parameters: Mapping[str, Any], option: str,
                          state: states.State, *, run_id: str, run_name: str | None,
                          deps: RunDeps | None = None) -> list[str]:
    """Run only the flow's `option` hooks for a run that ended in `state` elsewhere (its
    process was killed); return the messages of the hooks that raised."""
    ctx = _new_context(flow, parameters, None, None, deps, None, run_id, None, run_name)
    try:
        ctx.parameters = ctx.flow.validate_parameters(parameters)
        # As in the run itself: the FlowRun's name wins over a flow_run_name template.
        ctx.rename(ctx.default_name or ctx.flow.render_run_name(ctx.parameters, ctx.id, None))
    except (ParameterValidationError, ValueError):
        pass  # the run itself validated them; hooks see them as given
    ctx.progress.state = state
    return await hooks.run_hooks(ctx, option, state)


def _new_context(flow: FlowSpec, parameters: Mapping[str, Any], reporter: Reporter | None,
                 cancel_check: CancellationCheck | None, deps: RunDeps | None,
                 parent: FlowRunContext | None, run_id: str | None,
                 tag_limits: Mapping[str, int] | None, run_name: str | None) -> FlowRunContext:
    reporter = reporter or InMemoryReporter()
    deps = deps or (parent.services.deps if parent is not None else RunDeps())
    runner = runners.for_flow(flow)  # a subflow has its own, as in Prefect
    common: dict[str, Any] = dict(
        deps=deps, reporter=reporter, loop=RunLoop.current(), blocking_ops=BlockingOps(deps),
        async_ops=AsyncOps(deps), task_runner=runner,
        runner_ops=runners.RunnerOps(deps, runner) if runners.is_remote(runner) else None)
    if parent is None:
        services = RunServices(
            **common,
            cancel_check=cancel_check or getattr(reporter, "is_cancellation_requested", None),
            tag_limits=TagLimits({**flow.tag_limits, **(tag_limits or {})}),
            task_limiter=anyio.CapacityLimiter(flow.task_workers), stores=Stores.from_deps(deps))
    else:  # a subflow shares its parent's limits and stores (RunServices says why)
        inherited = parent.services
        services = RunServices(
            **common, cancel_check=cancel_check or inherited.cancel_check,
            tag_limits=inherited.tag_limits, task_limiter=inherited.task_limiter,
            stores=inherited.stores)
    return FlowRunContext(flow=flow, run_id=run_id or uuid.uuid4().hex,
                          parameters=dict(parameters), parent=parent, services=services,
                          record=RunRecord(), default_name=run_name)


async def propose(ctx: FlowRunContext, state: states.State) -> states.State:
    """Propose a flow-run state; Abort propagates when the backend refuses."""
    accepted = await ctx.services.reporter.propose_state(state)
    ctx.progress.state = accepted
    bad = accepted.type in (states.StateType.FAILED, states.StateType.CRASHED)
    level = logging.ERROR if bad else logging.INFO
    ctx.logger.log(level, "Flow run %r entered state %r", ctx.name, accepted)
    return accepted


async def _run(ctx: FlowRunContext, parameters: Mapping[str, Any]) -> states.State:
    try:
        ctx.parameters = ctx.flow.validate_parameters(parameters)
        rendered = ctx.flow.render_run_name(ctx.parameters, ctx.id)
        ctx.rename(ctx.default_name or rendered)
    except (ParameterValidationError, ValueError) as exc:
        return await _finish(ctx, states.Failed(str(exc), data=exc))
    try:
        await propose(ctx, states.Running())
        async with runners.running(ctx) as failure:  # before the first attempt, once
            state = failure if failure is not None else await _attempts(ctx)
    except Abort as exc:
        return await _aborted(ctx, exc)
    if ctx.progress.terminating:
        return await _finish_terminated(ctx)
    if state.is_paused():  # suspended: the state was proposed already, the process ends
        await _flush(ctx)
        return state
    return await _finish(ctx, state)


async def _attempts(ctx: FlowRunContext) -> states.State:
    flow = ctx.flow
    attempt = 1
    while True:
        ctx.record.start_attempt()
        ctx.reset_task_keys()  # same keys again, so completed task runs are reused
        state = await _execute(ctx)
        if ctx.progress.terminating or not state.is_failed() or attempt > flow.retries:
            return state
        delay = flow.retry_delay_seconds
        await propose(ctx, states.AwaitingRetry(
            state.message, scheduled_time=ctx.services.deps.clock() + timedelta(seconds=delay)))
        if delay:
            await (ctx.services.deps.asleep or anyio.sleep)(delay)
        attempt += 1
        await propose(ctx, states.Retrying(f"Attempt {attempt} of {flow.retries + 1}"))


async def _execute(ctx: FlowRunContext) -> states.State:
    """One attempt: body plus its submitted task runs, under timeout and SIGTERM scopes."""
    outcome = _Outcome()
    progress = ctx.progress
    token = flow_run_var.set(ctx)
    print_token = print_logger_var.set(ctx.logger) if ctx.log_prints else None
    if ctx.log_prints:
        enable_log_prints()
    try:
        await hooks.run_hooks(ctx, "on_running", progress.state)
        with anyio.CancelScope() as termination_scope:
            progress.cancel_scopes.add(termination_scope)
            with anyio.move_on_after(ctx.flow.timeout_seconds) as timeout_scope:
                async with anyio.create_task_group() as task_group:
                    progress.task_group = task_group
                    progress.pool = runners.new_pool(ctx, functools.partial(run_pooled, ctx))
                    await _call_body(ctx, outcome)
        progress.cancel_scopes.discard(termination_scope)
    finally:
        progress.task_group = None  # the pool stays, so a late interrupt reaches its workers
        if print_token is not None:
            print_logger_var.reset(print_token)
        flow_run_var.reset(token)
    if progress.terminating:
        return states.Crashed("Terminated")  # replaced by _finish_terminated
    if timeout_scope.cancelled_caught:
        interrupt_run(ctx, terminating=False)  # stop the body thread and subflows
        message = f"Flow run exceeded its timeout of {ctx.flow.timeout_seconds} seconds"
        return states.TimedOut(message, data=TimeoutError(message))
    return _outcome_state(ctx, outcome)


async def _call_body(ctx: FlowRunContext, outcome: _Outcome) -> None:
    args, kwargs = ctx.flow.parameters.call_arguments(ctx.parameters)
    try:
        # Either body runs in its own thread (an async one on its own event loop), so the
        # run's loop stays free for submitted task runs, summary flushes and SIGTERM, and a
        # body may block on a future (`.result()`, `.wait()`) in async flows too.
        body_call = LoopCall if ctx.flow.is_async else ThreadCall
        outcome.value = await _run_body(
            ctx, body_call(ctx.flow.fn, args, kwargs, name=f"flowpod-flow-{ctx.name}"))
    except anyio.get_cancelled_exc_class():
        raise
    except BaseException as exc:  # judged after submitted task runs have finished
        outcome.error = exc


async def _run_body(ctx: FlowRunContext, call: ThreadCall) -> Any:
    loop = ctx.services.loop.loop
    done = anyio.Event()
    ctx.progress.body_call = call
    call.add_done_callback(lambda: _set_threadsafe(loop, done))
    call.start()
    try:
        await done.wait()
    except BaseException:  # timeout or SIGTERM: stop the abandoned body at once
        call.interrupt()
        raise
    return call.outcome()


def _set_threadsafe(loop: asyncio.AbstractEventLoop, event: anyio.Event) -> None:
    # anyio's from_thread helpers block the caller until the loop runs them; a
    # finishing body thread only needs to wake the loop, so post a callback instead.
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # the loop is already closed
        pass


def _outcome_state(ctx: FlowRunContext, outcome: _Outcome) -> states.State:
    exc = outcome.error
    if exc is None:
        return _state_from_value(ctx, outcome.value)
    if isinstance(exc, Pause):
        return exc.state or states.Suspended(str(exc))
    if isinstance(exc, Abort):
        raise exc
    if isinstance(exc, Exception):
        ctx.logger.error("Flow run %r raised", ctx.name, exc_info=exc)
        return states.Failed(f"Flow run raised {type(exc).__name__}: {exc}", data=exc)
    ctx.logger.error("Crash detected in flow run %r", ctx.name, exc_info=exc)
    return states.Crashed(f"Flow run crashed: {type(exc).__name__}: {exc}".rstrip(": "), data=exc)


def _state_from_value(ctx: FlowRunContext, value: Any) -> states.State:
    if isinstance(value, states.State):  # e.g. `return future.wait()`: it becomes the run's
        if value.is_final():
            return value
        return states.Failed(f"The flow returned a {value.name} state, which is not final: "
                             f"{value.message or 'no message'}",
                             data=value.result(raise_on_failure=False))
    single = isinstance(value, TaskRunFuture)
    if single or (isinstance(value, (list, tuple)) and value
                  and all(isinstance(v, (TaskRunFuture, states.State)) for v in value)):
        items = [value] if single else list(value)
        results = [v.state if isinstance(v, TaskRunFuture) else v for v in items]
        bad = [s for s in results if not s.is_completed()]
        if bad:
            return states.Failed(
                f"{len(bad)} of {len(results)} returned task runs did not complete; first: "
                f"{bad[0].name}: {bad[0].message}", data=bad[0].result(raise_on_failure=False))
        data = [s.data for s in results]
        return states.Completed(data=data[0] if single else data)
    if value is None:
        failures = ctx.record.unhandled_failures()
        if failures:
            first = failures[0].state
            return states.Failed(
                f"{len(failures)} task run(s) failed and the flow did not handle them; first: "
                f"{failures[0].name!r}: {first.message}", data=first.result(raise_on_failure=False))
    return states.Completed(data=value)


async def _finish(ctx: FlowRunContext, state: states.State) -> states.State:
    await _flush(ctx)  # the summary is complete before the run looks final
    # Final hooks run just before the final state is written, so what they print is part
    # of what is written with it (a FlowRun keeps the last lines of a failed or cancelled
    # run's output in its status, written together with the final state).
    # Hooks of a state the backend will refuse (the run is being cancelled, or already
    # ended) never run: the run ends in another state, whose hooks run instead.
    hook_option = _FINAL_HOOKS.get(state.type)
    if hook_option is not None and ctx.flow.hooks[hook_option] and await _acceptable(ctx, state):
        await hooks.run_final_hooks(ctx, hook_option, state)
    try:
        return await propose(ctx, state)
    except Abort as exc:
        return await _aborted(ctx, exc)


async def _acceptable(ctx: FlowRunContext, state: states.State) -> bool:
    """Whether the backend's current state lets `state` be written (if it cannot say,
    assume so: the write itself is the authority)."""
    try:
        current = await ctx.services.reporter.read_state()
    except Exception:
        return True
    return states.accept(current, state).verdict is not states.Verdict.REFUSE


async def _aborted(ctx: FlowRunContext, exc: Abort) -> states.State:
    """The backend refused a state: finish a cancellation, or stop where it says."""
    current = exc.state or await ctx.services.reporter.read_state()
    if current is not None and current.is_cancelling():
        return await _finish(ctx, states.Cancelled("Flow run was cancelled"))
    ctx.logger.warning("Flow run %r stopped: the backend refused a state (%s)", ctx.name, exc)
    return current or states.Crashed(f"The backend refused a state: {exc}")


async def _report_crash(ctx: FlowRunContext, exc: BaseException) -> None:
    """Record a crash that escaped the engine, then let the exception go on."""
    interrupt_run(ctx, terminating=False)
    ctx.logger.error("Crash detected in flow run %r: %r", ctx.name, exc)
    try:
        await _finish(ctx, states.Crashed(f"Flow run crashed: {type(exc).__name__}: {exc}"
                                          .rstrip(": "), data=exc))
    except Exception:  # the reporter may be what failed; the original error matters more
        ctx.logger.exception("Could not report the crash of flow run %r", ctx.name)


async def _finish_terminated(ctx: FlowRunContext) -> states.State:
    """After SIGTERM: Cancelling -> Cancelled if cancellation was requested, else Crashed."""
    signal_exc = TerminationSignal(signal.SIGTERM)
    if await _cancellation_requested(ctx):
        try:
            await propose(ctx, states.Cancelling("SIGTERM after a cancellation request"))
        except Abort:
            pass  # already Cancelling (the backend's own doing): go on to Cancelled
        return await _finish(ctx, states.Cancelled(
            "Flow run was cancelled (SIGTERM after a cancellation request)", data=signal_exc))
    return await _finish(ctx, states.Crashed(
        "Flow run was terminated by SIGTERM without a cancellation request", data=signal_exc))


async def _cancellation_requested(ctx: FlowRunContext) -> bool:
    check = ctx.services.cancel_check
    if check is None:
        return False
    try:
        with anyio.fail_after(10):  # a stuck backend must not keep a terminated pod alive
            answer = check()
            if inspect.isawaitable(answer):
                answer = await answer
        return bool(answer)
    except Exception:
        ctx.logger.warning("Could not ask whether cancellation was requested", exc_info=True)
        return False


async def _flush_periodically(ctx: FlowRunContext) -> None:
    while True:
        await anyio.sleep(ctx.services.deps.flush_interval)
        await _flush(ctx)


async def _flush(ctx: FlowRunContext) -> None:
    version = ctx.record.version
    if version == ctx.progress.flushed_version or (version == 0 and ctx.parent is not None):
        return
    ctx.progress.flushed_version = version
    try:
        await ctx.services.reporter.flush_task_runs(ctx.record.summary())
    except Exception:  # a missed flush is repaired by the next one
        ctx.logger.warning("Could not flush the task-run summary of %r", ctx.name, exc_info=True)
