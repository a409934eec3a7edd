"""`@task` and the Task object: calling, submitting and mapping task runs.

Role: the user-facing side of tasks. `Task.__call__` runs a sync task inline
(blocking ops, no event loop) or returns a coroutine for an async task;
`.submit()` schedules a run on the flow run's loop and returns a TaskRunFuture;
`.map()` expands iterables (with `unmapped`) into many submits. Option checking
lives here so bad options fail at decoration time, naming the option. Callers:
user code via `flowpod.task`; the engine core is flowpod._runtime.task_engine.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Callable

from flowpod import states
from flowpod._runtime.annotations import unmapped
from flowpod._runtime.contexts import FlowRunContext, TaskRunContext, enable_log_prints, flow_run_var
from flowpod._runtime.futures import FutureList, TaskRunFuture
from flowpod._runtime.ops import BlockingOps, run_blocking
from flowpod.errors import MappingLengthMismatch, MappingMissingIterable, UpstreamTaskError

__all__ = ["Task", "task", "exponential_backoff"]


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """retry_delay_seconds helper: delays backoff_factor * 2**n for retry n = 0, 1, ..."""
    if backoff_factor < 0:
        raise ValueError(f"backoff_factor must be >= 0, got {backoff_factor!r}")
    return lambda retries: [backoff_factor * 2**n for n in range(retries)]


def _check(ok: bool, option: str, value: Any, fix: str) -> None:
    if not ok:
        raise ValueError(f"@task option {option}={value!r} is invalid: {fix}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _check_options(opts: dict[str, Any]) -> None:
    retries, delays = opts["retries"], opts["retry_delay_seconds"]
    _check(isinstance(retries, int) and retries >= 0, "retries", retries, "use an int >= 0")
    _check(_is_number(delays) or callable(delays) or (
        isinstance(delays, (list, tuple)) and all(_is_number(d) for d in delays)),
        "retry_delay_seconds", delays,
        "use seconds >= 0, a list of them, or exponential_backoff(...)")
    jitter = opts["retry_jitter_factor"]
    _check(jitter is None or _is_number(jitter), "retry_jitter_factor", jitter, "use a number >= 0")
    timeout = opts["timeout_seconds"]
    _check(timeout is None or (_is_number(timeout) and timeout > 0), "timeout_seconds", timeout,
           "use a number of seconds > 0, or None")
    expiration = opts["cache_expiration"]
    _check(expiration is None or isinstance(expiration, timedelta), "cache_expiration",
           expiration, "use a datetime.timedelta, or None")
    for name in ("cache_key_fn", "retry_condition_fn"):
        _check(opts[name] is None or callable(opts[name]), name, opts[name], "use a callable")
    name = opts["task_run_name"]
    _check(name is None or isinstance(name, str) or callable(name), "task_run_name", name,
           "use a format string like 'load-{day}' or a callable")


class Task:
    """A function whose calls are tracked, retried, cached and reported as task runs."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None, tags: Iterable[str] = (), retries: int = 0,
                 retry_delay_seconds: Any = 0, retry_jitter_factor: float | None = None,
                 retry_condition_fn: Callable[..., bool] | None = None,
                 timeout_seconds: float | None = None,
                 cache_key_fn: Callable[..., Any] | None = None,
                 cache_expiration: timedelta | None = None, refresh_cache: bool = False,
                 persist_result: bool | None = None, task_run_name: Any = None,
                 log_prints: bool | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"@task must decorate a function, got {fn!r}")
        options = dict(locals())
        del options["self"], options["fn"]
        _check_options(options)
        if isinstance(tags, str):
            raise ValueError(f"@task option tags={tags!r} is invalid: use a list of strings")
        self._options = options
        self.fn = fn
        self.name = name or fn.__name__
        self.task_key = self.name
        self.description = description or inspect.getdoc(fn)
        self.tags = frozenset(tags)
        self.retries, self.retry_delay_seconds = retries, retry_delay_seconds
        self.retry_jitter_factor, self.retry_condition_fn = retry_jitter_factor, retry_condition_fn
        self.timeout_seconds = timeout_seconds
        self.cache_key_fn, self.cache_expiration = cache_key_fn, cache_expiration
        self.refresh_cache, self.persist_result = refresh_cache, persist_result
        self.task_run_name, self.log_prints = task_run_name, log_prints
        self.is_async = inspect.iscoroutinefunction(fn)
        # Binding arguments to names costs microseconds; only do it when something reads them.
        self.needs_parameters = task_run_name is not None or cache_key_fn is not None
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def with_options(self, **changes: Any) -> "Task":
        """A copy of this task with some options changed."""
        return Task(self.fn, **{**self._options, **changes})

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def bind_parameters(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def render_run_name(self, parameters: dict[str, Any]) -> str:
        if callable(self.task_run_name):
            return str(self.task_run_name())
        try:
            return self.task_run_name.format(**parameters)
        except (KeyError, IndexError) as exc:
            raise ValueError(f"task_run_name {self.task_run_name!r} of task {self.name!r} uses "
                             f"{exc}, which is not a parameter of the task") from None

    def wants_log_prints(self, flow_run: FlowRunContext | None) -> bool:
        if self.log_prints is not None:
            return self.log_prints
        return flow_run is not None and flow_run.log_prints

    def print_logger(self, context: TaskRunContext) -> logging.LoggerAdapter:
        enable_log_prints()
        return logging.LoggerAdapter(logging.getLogger("flowpod.task_runs"),
                                     {"task_run_name": context.task_run.name})

    # -- calling ---------------------------------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None,
                 **kwargs: Any) -> Any:
        if self.is_async:
            return self._call_async(args, kwargs, return_state, wait_for)
        from flowpod._runtime import task_engine

        flow_run = flow_run_var.get()
        record = task_engine.new_record(self, flow_run)
        ops = flow_run.blocking_ops if flow_run is not None else BlockingOps(_default_deps())
        run_blocking(task_engine.run_task(ops, self, flow_run, record, args, kwargs, wait_for))
        return _outcome(record, return_state)

    async def _call_async(self, args: tuple, kwargs: dict[str, Any], return_state: bool,
                          wait_for: Any) -> Any:
        from flowpod._runtime import task_engine

        flow_run = flow_run_var.get()
        record = task_engine.new_record(self, flow_run)
        ops = task_engine.async_ops_for(flow_run)
        await task_engine.run_task(ops, self, flow_run, record, args, kwargs, wait_for)
        return _outcome(record, return_state)

    def submit(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> TaskRunFuture:
        """Start a task run concurrently; returns its future."""
        flow_run = _require_flow_run(self, "submit")
        return self._submit_many(flow_run, [(args, kwargs)], wait_for)[0]

    def map(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> FutureList:
        """One task run per element of the iterable arguments (zipped); returns their futures."""
        flow_run = _require_flow_run(self, "map")
        return self._submit_many(flow_run, self._expand(flow_run, args, kwargs), wait_for)

    def _submit_many(self, flow_run: FlowRunContext, calls: list[tuple[tuple, dict]],
                     wait_for: Any) -> FutureList:
        from flowpod._runtime import task_engine

        futures = FutureList(TaskRunFuture(task_engine.new_record(self, flow_run), flow_run)
                             for _ in calls)
        batch = [(self, f, a, k, wait_for) for f, (a, k) in zip(futures, calls, strict=True)]
        task_engine.submit_tasks(flow_run, batch)
        return futures

    def _expand(self, flow_run: FlowRunContext, args: tuple,
                kwargs: dict) -> list[tuple[tuple, dict]]:
        bound = self.signature.bind(*args, **kwargs)
        mapped: dict[str, list[Any]] = {}
        for name, value in bound.arguments.items():
            if isinstance(value, TaskRunFuture):  # map over an upstream's (list) result
                value = bound.arguments[name] = _upstream_value(flow_run, value, self.name)
            if _is_mappable(value) and self.signature.parameters[name].kind not in _VARIADIC:
                mapped[name] = list(value)
        if not mapped:
            raise MappingMissingIterable(
                f"{self.name}.map() got no iterable argument to map over (arguments: "
                f"{_describe(bound.arguments)}). Pass a list or tuple for at least one "
                "parameter, or call the task directly / with .submit() for a single run.")
        lengths = {name: len(values) for name, values in mapped.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n}={length}" for n, length in lengths.items())
            raise MappingLengthMismatch(
                f"{self.name}.map() got iterables of different lengths: {shown}. Give them the "
                "same length, or wrap a value in unmapped(...) to pass it whole to every run.")
        calls = []
        for index in range(next(iter(lengths.values()))):
            arguments = {n: (mapped[n][index] if n in mapped else _unwrap(v))
                         for n, v in bound.arguments.items()}
            item = inspect.BoundArguments(self.signature, arguments)  # type: ignore[arg-type]
            calls.append((item.args, item.kwargs))
        return calls


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


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


def _require_flow_run(task: Task, method: str) -> FlowRunContext:
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError(f"{task.name}.{method}() must be called inside a flow run; call "
                           f"{task.name}(...) directly to run it outside a flow.")
    return flow_run


def _default_deps() -> Any:
    from flowpod._runtime.contexts import RunDeps

    return RunDeps()


def _outcome(record: Any, return_state: bool) -> Any:
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


def task(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function as a task: `@task` or `@task(retries=2, ...)`."""
    if __fn is None:
        return lambda fn: Task(fn, **options)
    return Task(__fn, **options)
