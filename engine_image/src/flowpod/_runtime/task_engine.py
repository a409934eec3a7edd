"""The task-run engine: one async core that runs a task run from Pending to final.

Role: `run_task` orchestrates a task run -- reuse of an earlier result, upstream
resolution (NotReady), cache lookup, tag-concurrency slots, attempts with retries
and timeouts, result persistence -- through an `ops` object (flowpod._runtime.ops) so
that the same code serves sync callers (driven without an event loop) and async ones.
It reads a task only through flowpod._runtime.specs.TaskSpec: the user-facing Task
(flowpod._runtime.tasks) and how calls reach this core (flowpod._runtime.task_calls)
sit above it. Callers: flowpod._runtime.task_calls.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterable

from flowpod import states
from flowpod._runtime.contexts import (
    FlowRunContext,
    TaskRunContext,
    enable_log_prints,
    print_logger_var,
    task_run_var,
)
from flowpod._runtime.deps import RunDeps, Stores
from flowpod._runtime.futures import check_wait_for, find_upstreams, resolve_inputs
from flowpod._runtime.limits import TagLimits
from flowpod._runtime.ops import TaskTimedOut
from flowpod._runtime.records import TaskRunRecord
from flowpod.errors import TaskRunCrashed, UpstreamTaskError

if TYPE_CHECKING:
    from flowpod._runtime.ops import Ops
    from flowpod._runtime.specs import TaskSpec

__all__ = ["run_task", "retry_delay"]

logger = logging.getLogger("flowpod.task_runs")
_NO_LIMITS = TagLimits()


def retry_delay(task: TaskSpec, retry_index: int,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number retry_index + 1, jitter included."""
    delays = task.retry_delay_seconds
    if callable(delays):
        delays = delays(task.retries)
    if isinstance(delays, (list, tuple)):
        delay = float(delays[min(retry_index, len(delays) - 1)]) if delays else 0.0
    else:
        delay = float(delays or 0)
    if task.retry_jitter_factor:  # spread retries of many runs (no thundering herd)
        delay *= 1 + task.retry_jitter_factor * (2 * rand() - 1)
    return max(delay, 0.0)


async def run_task(ops: Ops, task: TaskSpec, flow_run: FlowRunContext | None,
                   record: TaskRunRecord, args: tuple, kwargs: dict[str, Any],
                   wait_for: Iterable[Any] | None) -> TaskRunRecord:
    """Run one task run to a final (or NotReady) state; record it in the flow run."""
    try:
        await _orchestrate(ops, task, flow_run, record, args, kwargs, wait_for)
    except Exception as exc:  # from cache_key_fn, task_run_name, stored results: not user code
        if not record.state.is_final():
            record.set_state(states.Failed(
                f"Task run could not run: {type(exc).__name__}: {exc}", data=exc))
    except BaseException as exc:  # KeyboardInterrupt, cancellation, interruption: a crash
        if not record.state.is_final():
            record.set_state(states.Crashed(f"Task run crashed: {type(exc).__name__}: {exc}",
                                            data=exc))
            _finish(flow_run, record)
        raise
    _finish(flow_run, record)
    return record


def _finish(flow_run: FlowRunContext | None, record: TaskRunRecord) -> None:
    if flow_run is not None:
        flow_run.record.finish(record)


async def _orchestrate(ops: Ops, task: TaskSpec, flow_run: FlowRunContext | None,
                       record: TaskRunRecord, args: tuple, kwargs: dict[str, Any],
                       wait_for: Iterable[Any] | None) -> None:
    persist = task.persist_result if task.persist_result is not None else (
        flow_run is not None and flow_run.persist_result)
    if flow_run is not None and _reuse_earlier(flow_run, record, persist):
        return
    resolved = await _resolve_upstreams(ops, record, args, kwargs, wait_for)
    if resolved is None:
        return
    args, kwargs = resolved
    parameters = task.bind_parameters(args, kwargs) if task.needs_parameters else {}
    context = TaskRunContext(task, record, flow_run, parameters)
    if task.task_run_name is not None:
        record.name = task.render_run_name(parameters)
    stores = flow_run.services.stores if flow_run is not None else Stores.from_deps(RunDeps())
    cache_key = task.cache_key_fn(context, parameters) if task.cache_key_fn else None
    if cache_key is not None and not task.refresh_cache:
        hit, value = stores.cache.get(cache_key)
        if hit:
            record.set_state(states.Cached(f"Cache hit for key {cache_key[:12]}", data=value))
            return
    state = await _attempts_with_slots(ops, task, flow_run, record, context, args, kwargs)
    if state.is_completed():
        _store(task, flow_run, record, stores, state, cache_key, persist)


async def _resolve_upstreams(ops: Ops, record: TaskRunRecord, args: tuple,
                             kwargs: dict[str, Any], wait_for: Iterable[Any] | None
                             ) -> tuple[tuple, dict[str, Any]] | None:
    """Arguments with upstream values filled in; None (and NotReady) if one did not complete."""
    upstreams = find_upstreams((*args, *kwargs.values(), *(wait_for or ())))
    if not upstreams:
        return args, kwargs
    await ops.wait(upstreams)
    try:
        resolved = resolve_inputs(args, kwargs)
        check_wait_for(wait_for or ())
    except UpstreamTaskError as exc:
        record.set_state(states.NotReady(str(exc), data=exc))
        return None
    return resolved


async def _attempts_with_slots(ops: Ops, task: TaskSpec, flow_run: FlowRunContext | None,
                               record: TaskRunRecord, context: TaskRunContext, args: tuple,
                               kwargs: dict[str, Any]) -> states.State:
    """The attempts, holding a concurrency slot for each limited tag of the task."""
    limits = flow_run.services.tag_limits if flow_run is not None else _NO_LIMITS
    semaphores = limits.limited(task.tags)
    if semaphores and not limits.try_acquire(semaphores):
        record.set_state(states.AwaitingConcurrencySlot(f"Waiting for tags {sorted(task.tags)}"))
        await ops.acquire(limits, semaphores)
    try:
        deps = flow_run.services.deps if flow_run is not None else None
        return await _attempts(ops, task, record, context, args, kwargs, deps)
    finally:
        limits.release(semaphores)


def _reuse_earlier(flow_run: FlowRunContext, record: TaskRunRecord, persist: bool) -> bool:
    """Skip a task run that already completed under the same key in this flow run."""
    earlier = flow_run.record.completed_by_key.get(record.key)
    if earlier is not None:  # an earlier in-process attempt of this flow run
        record.set_state(states.Completed("Reused the result of an earlier attempt",
                                          data=earlier.data))
        return True
    if not persist:
        return False
    results = flow_run.services.stores.results
    found, value = results.read(_result_path(flow_run, record))
    if found:  # an earlier process ran this flow run (a re-run after a crash or suspend)
        record.set_state(states.Completed("Reused the persisted result of an earlier run",
                                          data=value))
        return True
    source = flow_run.services.deps.reuse_results_from
    if source is None:
        return False
    found, value = results.read(_result_path(flow_run, record, source))
    if found:  # the run this one retries completed it (`flowpod retry --from-failure`)
        # Copied under this run's own key, so a retry of this retry finds it too.
        results.write(_result_path(flow_run, record), value)
        record.set_state(states.Completed(f"Reused the result of flow run {source}",
                                          data=value))
    return found


def _result_path(flow_run: FlowRunContext, record: TaskRunRecord,
                 run_id: str | None = None) -> Any:
    return flow_run.services.stores.results.path_for("runs", run_id or flow_run.id, record.key)


async def _attempts(ops: Ops, task: TaskSpec, record: TaskRunRecord, context: TaskRunContext,
                    args: tuple, kwargs: dict[str, Any], deps: RunDeps | None) -> states.State:
    while True:
        record.run_count += 1
        record.set_state(states.Running() if record.run_count == 1 else states.Retrying(
            f"Attempt {record.run_count} of {task.retries + 1}"))
        state = await _attempt(ops, task, context, args, kwargs)
        if not state.is_failed() or record.run_count > task.retries or not _retriable(
                task, record, state):
            if state.is_failed():
                logger.error("Task run %r ended %r", record.name, state,
                             exc_info=state.data if isinstance(state.data, BaseException) else None)
            return record.set_state(state)
        delay = retry_delay(task, record.run_count - 1)
        logger.warning("Task run %r attempt %d of %d failed (%s); retrying in %.3g s",
                       record.name, record.run_count, task.retries + 1, state.message, delay)
        clock = deps.clock if deps is not None else RunDeps().clock
        record.set_state(states.AwaitingRetry(
            state.message, scheduled_time=clock() + timedelta(seconds=delay)))
        await ops.sleep(delay)


async def _attempt(ops: Ops, task: TaskSpec, context: TaskRunContext, args: tuple,
                   kwargs: dict[str, Any]) -> states.State:
    token = task_run_var.set(context)
    print_token = print_logger_var.set(_print_logger(context)) if _wants_log_prints(
        task, context.flow_run) else None
    try:
        value = await ops.call(task.fn, args, kwargs, task.timeout_seconds)
    except TaskTimedOut:
        message = f"Task run exceeded its timeout of {task.timeout_seconds} seconds"
        return states.TimedOut(message, data=TimeoutError(message))
    except TaskRunCrashed as exc:  # the task runner lost the work (a Dask worker died)
        return states.Crashed(f"Task run crashed: {exc}", data=exc)
    except Exception as exc:
        return states.Failed(f"Task run raised {type(exc).__name__}: {exc}", data=exc)
    finally:
        if print_token is not None:
            print_logger_var.reset(print_token)
        task_run_var.reset(token)
    return value if isinstance(value, states.State) else states.Completed(data=value)


def _wants_log_prints(task: TaskSpec, flow_run: FlowRunContext | None) -> bool:
    if task.log_prints is not None:
        return task.log_prints
    return flow_run is not None and flow_run.log_prints


def _print_logger(context: TaskRunContext) -> logging.LoggerAdapter:
    enable_log_prints()
    return logging.LoggerAdapter(logging.getLogger("flowpod.task_runs"),
                                 {"task_run_name": context.task_run.name})


def _retriable(task: TaskSpec, record: TaskRunRecord, state: states.State) -> bool:
    if task.retry_condition_fn is None:
        return True
    try:
        return bool(task.retry_condition_fn(task, record, state))
    except Exception:  # a broken condition must not crash the run: just stop retrying
        logger.exception("retry_condition_fn of task %r raised; not retrying", task.name)
        return False


def _store(task: TaskSpec, flow_run: FlowRunContext | None, record: TaskRunRecord,
           stores: Stores, state: states.State, cache_key: str | None, persist: bool) -> None:
    try:
        if persist and flow_run is not None:
            stores.results.write(_result_path(flow_run, record), state.data)
        if cache_key is not None:
            stores.cache.put(cache_key, state.data, task.cache_expiration)
    except Exception:  # an unpicklable result still completed; it just is not reusable
        logger.warning("Could not persist the result of task run %r", record.name, exc_info=True)
