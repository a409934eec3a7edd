"""`@task` and the Task object: a task's definition, and its calls.

Role: the user-facing side of tasks. A Task holds its function and options (checked
here, so bad options fail at decoration time, naming the option), its name and how
it binds arguments. Calling it runs a sync task inline or returns a coroutine for an
async one; `.submit()` starts a run concurrently and returns a TaskRunFuture; `.map()`
starts one run per element. How those calls reach the engine is
flowpod._runtime.task_calls, imported on first call so `import flowpod` stays light;
the engine core is flowpod._runtime.task_engine. Callers: user code via `flowpod.task`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Callable

from flowpod._runtime.futures import FutureList, TaskRunFuture

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

    # -- calling (flowpod._runtime.task_calls) ------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None,
                 **kwargs: Any) -> Any:
        from flowpod._runtime import task_calls

        if self.is_async:
            return task_calls.call_async(self, args, kwargs, return_state, wait_for)
        return task_calls.call(self, args, kwargs, return_state, wait_for)

    def submit(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> TaskRunFuture:
        """Start a task run concurrently; returns its future."""
        from flowpod._runtime import task_calls

        flow_run = task_calls.require_flow_run(self, "submit")
        return task_calls.submit(self, flow_run, [(args, kwargs)], wait_for)[0]

    def map(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> FutureList:
        """One task run per element of the iterable arguments (zipped); returns their futures."""
        from flowpod._runtime import task_calls

        flow_run = task_calls.require_flow_run(self, "map")
        calls = task_calls.map_calls(self, flow_run, args, kwargs)
        return task_calls.submit(self, flow_run, calls, wait_for)


def task(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function as a task: `@task` or `@task(retries=2, ...)`."""
    if __fn is None:
        return lambda fn: Task(fn, **options)
    return Task(__fn, **options)
