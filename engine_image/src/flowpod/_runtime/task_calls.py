"""How a task call reaches the task engine: call, submit and map.

Role: what `Task.__call__`, `.submit()` and `.map()` (flowpod._runtime.tasks) do. A direct
sync call drives the engine core inline with blocking ops; an async call awaits it with
async ops; `submit` gives each run a key and a future and starts it as the flow's task
runner says (flowpod._runtime.runners): with the thread pool, concurrently -- sync runs in
the flow run's bounded worker pool (flowpod._runtime.pool), async ones as tasks on its loop,
and runs with unfinished upstreams wait on the loop first, holding no worker; with the
sequential runner, each to its end before submit returns; with a remote runner (Dask), all
as tasks on the loop whose ops call the function through the runner.
`map_calls` expands iterables (with `unmapped`) into one call per element. Callers:
flowpod._runtime.tasks, flowpod._runtime.flow_engine (`run_pooled`, the pool's worker).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flowpod import states
from flowpod._runtime.annotations import unmapped
from flowpod._runtime.contexts import FlowRunContext, flow_run_var
from flowpod._runtime.deps import RunDeps
from flowpod._runtime.futures import FutureList, TaskRunFuture, find_upstreams
from flowpod._runtime.ops import AsyncOps, BlockingOps, run_blocking
from flowpod._runtime.records import TaskRunRecord
from flowpod._runtime import runners
from flowpod._runtime.task_engine import run_task
from flowpod._runtime.threads import RunInterrupted
from flowpod.errors import MappingLengthMismatch, MappingMissingIterable, UpstreamTaskError

if TYPE_CHECKING:
    from flowpod._runtime.specs import TaskSpec

__all__ = ["call", "call_async", "submit", "map_calls", "run_pooled", "require_flow_run"]

# One submitted task run: (task, future, args, kwargs, wait_for).
SubmittedCall = tuple


def call(task: TaskSpec, args: tuple, kwargs: dict[str, Any], return_state: bool,
         wait_for: Any) -> Any:
    """A direct call of a sync task: run it to the end in this thread."""
    flow_run = flow_run_var.get()
    record = _new_record(task, flow_run)
    ops = flow_run.services.blocking_ops if flow_run is not None else BlockingOps(RunDeps())
    run_blocking(run_task(ops, task, flow_run, record, args, kwargs, wait_for))
    return _outcome(record, return_state)


async def call_async(task: TaskSpec, args: tuple, kwargs: dict[str, Any], return_state: bool,
                     wait_for: Any) -> Any:
    """A direct (awaited) call of an async task."""
    flow_run = flow_run_var.get()
    record = _new_record(task, flow_run)
    ops = flow_run.services.async_ops if flow_run is not None else AsyncOps(RunDeps())
    await run_task(ops, task, flow_run, record, args, kwargs, wait_for)
    return _outcome(record, return_state)


def require_flow_run(task: TaskSpec, method: str) -> FlowRunContext:
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError(f"{task.name}.{method}() must be called inside a flow run; call "
                           f"{task.name}(...) directly to run it outside a flow.")
    return flow_run


def submit(task: TaskSpec, flow_run: FlowRunContext, calls: list[tuple[tuple, dict]],
           wait_for: Any) -> FutureList:
    """Start one task run per (args, kwargs) concurrently; their futures, in order."""
    loop = flow_run.services.loop
    next_key, name, tags = flow_run.next_task_key, task.name, task.tags
    submitted = states.Pending().timestamp  # one instant for the whole batch
    records = [TaskRunRecord(name, next_key(task.task_key), tags,
                             states.Pending(timestamp=submitted)) for _ in calls]
    flow_run.record.add_many(records)
    pool = flow_run.progress.pool
    in_pool = pool is not None and not task.is_async and flow_run.services.runner_ops is None
    run_queued = pool.run_queued if in_pool else None
    futures = FutureList(TaskRunFuture(record, loop, run_queued) for record in records)
    batch = [(task, f, a, k, wait_for) for f, (a, k) in zip(futures, calls, strict=True)]
    if runners.is_sequential(flow_run.services.task_runner):
        _run_in_turn(flow_run, batch)
    else:
        _start(flow_run, batch)
    return futures


def run_pooled(flow_run: FlowRunContext, call: SubmittedCall) -> None:
    """A sync task run, in a flowpod._runtime.pool worker thread."""
    task, future, args, kwargs, wait_for = call
    try:
        run_blocking(run_task(flow_run.services.blocking_ops, task, flow_run, future.task_run,
                              args, kwargs, wait_for))
    except RunInterrupted:
        raise  # the flow run is being stopped: end this worker
    except BaseException:  # already recorded as Crashed; keep the worker serving others
        pass
    finally:
        future._finish()


def _new_record(task: TaskSpec, flow_run: FlowRunContext | None) -> TaskRunRecord:
    """Create (and register) a task run; its key depends only on call order in the run."""
    key = flow_run.next_task_key(task.task_key) if flow_run is not None else task.task_key
    record = TaskRunRecord(task.name, key, task.tags, states.Pending())
    if flow_run is not None:
        flow_run.record.add(record)
    return record


def _outcome(record: TaskRunRecord, return_state: bool) -> Any:
    """What a direct task call gives back: the value, or the state, or the exception."""
    state = record.state
    if return_state:
        record.handled = True
        return state
    if state.type is states.StateType.COMPLETED:
        return state.data
    record.handled = True
    if state.type is states.StateType.PENDING:
        raise UpstreamTaskError(state.message)
    return state.result()


# -- concurrent runs ---------------------------------------------------------------------

async def _run_submitted(flow_run: FlowRunContext, call: SubmittedCall) -> None:
    """An async task run, or any task run of a remote runner, as a task on the flow run's
    loop (a remote runner's ops call the function through the runner)."""
    task, future, args, kwargs, wait_for = call
    services = flow_run.services
    try:
        await run_task(services.runner_ops or services.async_ops, task, flow_run,
                       future.task_run, args, kwargs, wait_for)
    finally:
        future._finish()


async def _queue_when_ready(flow_run: FlowRunContext, call: SubmittedCall) -> None:
    """Wait (on the loop, holding no worker) for upstreams, then queue the run."""
    task, future, args, kwargs, wait_for = call
    await flow_run.services.async_ops.wait(
        find_upstreams((*args, *kwargs.values(), *(wait_for or ()))))
    progress = flow_run.progress
    assert progress.pool is not None and progress.task_group is not None  # during an attempt
    for _ in range(progress.pool.put([call])):
        progress.task_group.start_soon(progress.pool.worker)


def _has_pending_upstreams(call: SubmittedCall) -> bool:
    _, _, args, kwargs, wait_for = call
    upstreams = find_upstreams((*args, *kwargs.values(), *(wait_for or ())))
    return any(isinstance(u, TaskRunFuture) and not u.done() for u in upstreams)


def _start(flow_run: FlowRunContext, calls: list[SubmittedCall]) -> None:
    """Start task runs concurrently, from any thread (at most one hop to the loop)."""
    ready, waiting, async_calls = [], [], []
    remote = flow_run.services.runner_ops is not None
    for item in calls:
        if remote or item[0].is_async:
            async_calls.append(item)
        elif _has_pending_upstreams(item):
            waiting.append(item)
        else:
            ready.append(item)
    progress = flow_run.progress
    assert progress.pool is not None  # submit needs a running attempt (require_flow_run)
    pool = progress.pool
    new_workers = pool.put(ready) if ready else 0

    def start_on_loop() -> None:
        group = progress.task_group
        assert group is not None
        for _ in range(new_workers):
            group.start_soon(pool.worker)
        for item in waiting:
            group.start_soon(_queue_when_ready, flow_run, item)
        for item in async_calls:
            group.start_soon(_run_submitted, flow_run, item)

    if not (new_workers or waiting or async_calls):
        return  # running workers will pick the new items up
    if flow_run.on_loop_thread():
        start_on_loop()
    else:
        # Posted, not waited for: the caller goes on at once, and callbacks run in order, so
        # this one runs before the calling body's end can close the attempt's task group.
        flow_run.services.loop.loop.call_soon_threadsafe(start_on_loop)


def _run_in_turn(flow_run: FlowRunContext, calls: list[SubmittedCall]) -> None:
    """The sequential runner: each task run to its end, in order, before submit returns."""
    for item in calls:
        if not item[0].is_async:
            run_pooled(flow_run, item)
        elif flow_run.on_loop_thread():  # waiting here would block the loop it needs
            _start(flow_run, [item])
        else:
            asyncio.run_coroutine_threadsafe(_run_submitted(flow_run, item),
                                             flow_run.services.loop.loop).result()


# -- map ---------------------------------------------------------------------------------

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def map_calls(task: TaskSpec, flow_run: FlowRunContext, args: tuple,
              kwargs: dict[str, Any]) -> list[tuple[tuple, dict]]:
    """The (args, kwargs) of each run of `task.map(*args, **kwargs)`."""
    signature = task.signature
    bound = signature.bind(*args, **kwargs)
    mapped: dict[str, list[Any]] = {}
    for name, value in bound.arguments.items():
        if isinstance(value, TaskRunFuture):  # map over an upstream's (list) result
            value = bound.arguments[name] = _upstream_value(flow_run, value, task.name)
        if _is_mappable(value) and signature.parameters[name].kind not in _VARIADIC:
            mapped[name] = list(value)
    if not mapped:
        raise MappingMissingIterable(
            f"{task.name}.map() got no iterable argument to map over (arguments: "
            f"{_describe(bound.arguments)}). Pass a list or tuple for at least one "
            "parameter, or call the task directly / with .submit() for a single run.")
    lengths = {name: len(values) for name, values in mapped.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{n}={length}" for n, length in lengths.items())
        raise MappingLengthMismatch(
            f"{task.name}.map() got iterables of different lengths: {shown}. Give them the "
            "same length, or wrap a value in unmapped(...) to pass it whole to every run.")
    fixed = {n: _unwrap(v) for n, v in bound.arguments.items() if n not in mapped}
    columns = [(n, mapped[n]) for n in bound.arguments if n in mapped]
    count = next(iter(lengths.values()))
    rows = ({**fixed, **{n: values[i] for n, values in columns}} for i in range(count))
    if all(signature.parameters[n].kind in _BY_NAME for n in bound.arguments):
        return [((), row) for row in rows]  # every argument can go by name: no re-binding
    calls = []
    for arguments in rows:
        item = inspect.BoundArguments(signature, arguments)  # type: ignore[arg-type]
        calls.append((item.args, item.kwargs))
    return calls


def _is_mappable(value: Any) -> bool:
    # Strings, bytes and mappings are treated as single values: mapping over the
    # characters of a string is almost never what was meant.
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, unmapped))


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, unmapped) else value


def _describe(arguments: Mapping[str, Any]) -> str:
    shown = (f"{name}={type(value).__name__}" for name, value in arguments.items())
    return ", ".join(shown) or "none"


def _upstream_value(flow_run: FlowRunContext, future: TaskRunFuture, task_name: str) -> Any:
    if not future.done() and flow_run.on_loop_thread():
        raise RuntimeError(f"{task_name}.map() got an unfinished future; in an async flow "
                           "`await` it before mapping over its result.")
    future.wait()
    state = future.task_run.state
    if not state.is_completed():
        raise UpstreamTaskError(f"{task_name}.map() cannot map over task run "
                                f"{future.task_run.name!r}, which ended {state.name}.")
    return state.data
