"""Futures of submitted task runs, and resolving task inputs that refer to upstreams.

Role: `TaskRunFuture` is what `.submit()` returns (and `.map()` returns a
`FutureList` of them). `find_upstreams` / `resolve_inputs` turn futures and states
nested in a task's arguments into values, raising `UpstreamTaskError` when an
upstream did not complete (unless wrapped in `allow_failure`). Callers:
flowpod._runtime.task_engine (inputs, wait_for), flowpod._runtime.task_calls (submit,
map), flowpod._runtime.flow_engine (a flow that returns futures), user code.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

from flowpod import states
from flowpod._runtime.annotations import allow_failure, unmapped
from flowpod._runtime.threads import RunLoop, wait_event
from flowpod.errors import UpstreamTaskError

if TYPE_CHECKING:
    from flowpod._runtime.records import TaskRunRecord

__all__ = ["TaskRunFuture", "FutureList", "find_upstreams", "resolve_inputs", "check_wait_for"]

_FAILED_TYPES = frozenset({states.StateType.FAILED, states.StateType.CRASHED})
_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_CONTAINERS = (list, tuple, set, frozenset, dict)


# Guards the registration of waiters only. Finishing a future takes no lock: it sets
# `_done` and then reads the waiters, while a waiter registers and then re-reads `_done`,
# so (the GIL orders these reads and writes) one of them always sees the other. Waiters
# are made on demand, so a future nobody blocks on costs no threading.Event (a `.map()`
# over a thousand items would otherwise build a thousand of them).
_REGISTER = threading.Lock()


class TaskRunFuture:
    """The eventual final state of a submitted task run."""

    __slots__ = ("task_run", "_loop", "_run_queued", "_done", "_event", "_async_waiters")

    def __init__(self, task_run: "TaskRunRecord", loop: RunLoop,
                 run_queued: Callable[[], bool] | None = None) -> None:
        self.task_run = task_run
        self._loop = loop  # the flow run's: where its submitted runs are started
        # Runs one queued sync task run in the calling thread (flowpod._runtime.pool), so
        # a thread that blocks on this future does work instead of sleeping.
        self._run_queued = run_queued
        self._done = False
        self._event: threading.Event | None = None  # made by the first blocking waiter
        self._async_waiters: list[tuple[Any, int, Any]] | None = None  # (loop, thread, event)

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run.name!r}, state={self.task_run.state!r})"

    def done(self) -> bool:
        return self._done

    @property
    def state(self) -> states.State:
        """The current state (final once done()); seeing a final state counts as handling it."""
        state = self.task_run.state
        if self._done:
            self.task_run.handled = True
        return state

    def wait(self, timeout: float | None = None) -> states.State | None:
        """Block until the run is final and return its final state (None if the timeout
        passed first). Works in sync and async flows alike. Only looking at `.state` or
        `.result()` counts as handling a failure; waiting alone does not."""
        if not self._done:
            if self._loop.is_current_thread():
                raise RuntimeError(
                    f"Waiting for task run {self.task_run.name!r} here would block the event "
                    "loop that runs the flow's submitted task runs (this is an async task run "
                    "or a callback on that loop); use `await future` instead of "
                    ".wait()/.result().")
            if timeout is None and self._run_queued is not None:
                while not self._done and self._run_queued():
                    pass
            if not self._done and not wait_event(self._blocking_event(), timeout):
                return None
        return self.task_run.state

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; raises its exception when it did not complete."""
        if self.wait(timeout) is None:
            raise TimeoutError(f"Task run {self.task_run.name!r} did not finish in {timeout} s")
        return self.state.result(raise_on_failure=raise_on_failure)

    async def wait_async(self) -> None:
        """Wait on the calling event loop (whichever it is) until the run is final."""
        if self._done:
            return
        import asyncio

        import anyio

        event = anyio.Event()
        with _REGISTER:
            if self._async_waiters is None:
                self._async_waiters = []
            self._async_waiters.append(
                (asyncio.get_running_loop(), threading.get_ident(), event))
        if not self._done:  # re-read: _finish may have read the waiters before we came
            await event.wait()

    def __await__(self):
        yield from self.wait_async().__await__()
        return self.state.result()

    def _blocking_event(self) -> threading.Event:
        if self._event is None:
            with _REGISTER:
                if self._event is None:
                    self._event = threading.Event()
        if self._done:  # re-read: _finish may have read _event before it was made
            self._event.set()
        return self._event

    def _finish(self) -> None:
        """Mark done and wake waiters; async waiters are woken on their own loop's thread."""
        self._done = True  # before reading the waiters: see _REGISTER
        event, waiters = self._event, self._async_waiters
        if event is not None:
            event.set()
        for loop, thread, waiter in list(waiters or ()):
            _wake(loop, thread, waiter)


def _wake(loop: Any, thread: int, event: Any) -> None:
    if threading.get_ident() == thread:
        event.set()
        return
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # that loop already closed: its waiter is gone
        pass


class FutureList(list):
    """The futures of one `.map()` call."""

    def wait(self, timeout: float | None = None) -> None:
        # Last first: runs mostly finish in submission order, so the waiting thread
        # wakes about once instead of once per run (each wake-up is a GIL hand-off).
        for future in reversed(self):
            future.wait(timeout)

    def result(self, raise_on_failure: bool = True) -> list[Any]:
        self.wait()
        return [future.result(raise_on_failure=raise_on_failure) for future in self]


def _walk(value: Any, found: list[Any]) -> None:
    kind = type(value)
    if kind in _ATOMIC:
        return
    if kind is TaskRunFuture or isinstance(value, (TaskRunFuture, states.State)):
        found.append(value)
    elif isinstance(value, (allow_failure, unmapped)):
        found.append(value)  # so resolve_inputs unwraps it even without upstreams inside
        _walk(value.value, found)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, found)
    elif isinstance(value, _CONTAINERS):
        for item in value:
            _walk(item, found)


def find_upstreams(values: Iterable[Any]) -> list[Any]:
    """Futures, states and annotations nested in values (empty for plain data)."""
    found: list[Any] = []
    for value in values:
        _walk(value, found)
    return found


def _value_of(state: states.State, allowed: bool, label: str) -> Any:
    if state.type is states.StateType.COMPLETED:
        return state.data
    if allowed and state.type in _FAILED_TYPES:
        return state.result(raise_on_failure=False)
    raise UpstreamTaskError(
        f"Upstream task run {label} ended {state.name} ({state.message or 'no message'}), "
        "so this task run did not start."
    )


def _resolve(value: Any, allowed: bool) -> Any:
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, TaskRunFuture):
        return _value_of(value.task_run.state, allowed, repr(value.task_run.name))
    if isinstance(value, states.State):
        return _value_of(value, allowed, f"state {value!r}")
    if isinstance(value, allow_failure):
        return _resolve(value.value, True)
    if isinstance(value, unmapped):
        return _resolve(value.value, allowed)
    if isinstance(value, dict):
        return type(value)((k, _resolve(v, allowed)) for k, v in value.items())
    if isinstance(value, _CONTAINERS):
        items = [_resolve(v, allowed) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def resolve_inputs(args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Replace (finished) upstream futures/states by their values; raise UpstreamTaskError."""
    return (tuple(_resolve(a, False) for a in args),
            {k: _resolve(v, False) for k, v in kwargs.items()})


def check_wait_for(wait_for: Iterable[Any]) -> None:
    """Raise UpstreamTaskError unless every (finished) wait_for upstream completed."""
    for item in wait_for:
        _resolve(item, False)
