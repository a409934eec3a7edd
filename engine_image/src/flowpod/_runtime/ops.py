"""The two drivers of the one task-engine core: blocking ops and async ops.

Role: the task engine (flowpod._runtime.task_engine) is a single `async def` core. Every
place where it might wait (calling user code, waiting for upstream futures,
sleeping between retries, taking a tag-concurrency slot) goes through an `ops`
object, so the same core serves both worlds:

- `BlockingOps` for sync callers (a sync task called from a sync flow): every op
  finishes before returning, so the core never suspends and `run_blocking` drives
  it with a single `send()` -- no event loop and no thread hop per task, which is
  what keeps per-task overhead in microseconds;
- `AsyncOps` for async task runs, which run as tasks on the flow run's anyio loop.
  (Submitted sync task runs use BlockingOps in flowpod._runtime.pool's bounded workers.)

Callers: flowpod._runtime.task_engine (the core), flowpod._runtime.task_calls (which
picks the ops), flowpod._runtime.flow_engine (which builds them once per flow run).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Iterable

from flowpod._runtime.futures import TaskRunFuture
from flowpod._runtime.threads import ThreadCall, wait_event

if TYPE_CHECKING:
    from flowpod._runtime.deps import RunDeps
    from flowpod._runtime.limits import TagLimits

__all__ = ["TaskTimedOut", "BlockingOps", "AsyncOps", "Ops", "run_blocking"]


class TaskTimedOut(Exception):
    """Internal: the user call exceeded its timeout_seconds (becomes a TimedOut state)."""


def run_blocking(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a core coroutine built on BlockingOps to completion in this thread."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("flowpod engine bug: a core driven by BlockingOps tried to suspend")


class BlockingOps:
    """Ops that block the calling thread; their coroutines never suspend."""

    is_async = False

    def __init__(self, deps: "RunDeps") -> None:
        self._sleep = deps.sleep

    async def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
                   timeout: float | None) -> Any:
        if timeout is None:
            return fn(*args, **kwargs)
        # A thread can only be abandoned, not stopped, so the timed call gets its own
        # daemon thread and is interrupted if it overruns.
        call = ThreadCall(fn, args, kwargs, name="flowpod-timed-task").start()
        try:
            finished = wait_event(call.done, timeout)
        except BaseException:
            call.interrupt()
            raise
        if not finished:
            call.interrupt()
            raise TaskTimedOut()
        return call.outcome()

    async def wait(self, upstreams: Iterable[Any]) -> None:
        for upstream in upstreams:
            if isinstance(upstream, TaskRunFuture):
                upstream.wait()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    async def acquire(self, limits: "TagLimits", semaphores: list) -> None:
        limits.acquire_blocking(semaphores, time.sleep)


class AsyncOps:
    """Ops for a core running as a task on the flow run's anyio event loop."""

    is_async = True

    def __init__(self, deps: "RunDeps") -> None:
        import anyio

        self._anyio = anyio
        self._asleep: Callable[[float], Awaitable[None]] = deps.asleep or anyio.sleep

    async def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
                   timeout: float | None) -> Any:
        # Only async task functions come here: sync ones always run under BlockingOps
        # (inline, or in a flowpod._runtime.pool worker thread).
        if timeout is None:
            return await fn(*args, **kwargs)
        with self._anyio.move_on_after(timeout):
            return await fn(*args, **kwargs)
        raise TaskTimedOut()  # reached only when move_on_after cancelled the call

    async def wait(self, upstreams: Iterable[Any]) -> None:
        for upstream in upstreams:
            if isinstance(upstream, TaskRunFuture):
                await upstream.wait_async()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self._asleep(seconds)

    async def acquire(self, limits: "TagLimits", semaphores: list) -> None:
        await limits.acquire_async(semaphores, self._anyio.sleep)


# Either driver; the task engine is written against what both provide.
Ops = BlockingOps | AsyncOps
