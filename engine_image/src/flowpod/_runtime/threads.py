"""Threads whose Python code can be interrupted, for timeouts and SIGTERM.

Role: sync user code that runs off the calling thread (a sync flow body, a
submitted sync task, a sync task with a timeout) runs inside an `Interruptible`.
When its run times out or the process gets SIGTERM, the engine stops waiting at
once and *interrupts* it: `RunInterrupted` is injected and fires at the thread's
next Python bytecode, so abandoned code cannot keep going unseen (a C call such as
a long time.sleep finishes first). `ThreadCall` runs one call in a new daemon
thread, so an abandoned one never holds the process open; `LoopCall` runs a coroutine
function on its own event loop in such a thread (an async flow body, so that blocking on
a future there never stalls the run's loop) and is stopped by cancellation instead. `RunLoop`
is the event loop that drives a flow run, as seen from any thread. Callers: every other
runtime module.
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import asyncio

    from anyio.lowlevel import EventLoopToken

__all__ = ["RunInterrupted", "Interruptible", "ThreadCall", "LoopCall", "RunLoop", "wait_event"]

_POLL = 0.05  # seconds; how late an interrupted waiter may notice its interruption


class RunInterrupted(BaseException):
    """Injected into a thread whose run was abandoned (timeout, termination).

    A BaseException so user code's `except Exception` cannot swallow it.
    """


def _inject(ident: int) -> None:
    import ctypes  # only needed when something is actually interrupted

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(RunInterrupted)
    )


def wait_event(event: threading.Event, timeout: float | None = None) -> bool:
    """Event.wait that an injected exception can break within _POLL seconds.

    A plain wait() blocks in C, where injected exceptions are not delivered.
    """
    if event.is_set():
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        if step <= 0:
            return event.is_set()
        if event.wait(step):
            return True


def _checkpoint() -> None:
    """A Python-level call: a pending injected exception fires on entering it."""


def _absorb_late_interrupt() -> None:
    # An interrupt injected just before user code returned may fire a few bytecodes
    # later; make it fire here, where it is harmless, rather than in a thread pool's
    # own code (where it would kill the worker thread).
    try:
        _checkpoint()
    except RunInterrupted:
        pass


class Interruptible:
    """Runs one call in whatever thread calls run(); interrupt() stops it from outside."""

    __slots__ = ("_lock", "_ident", "_interrupted")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None  # set while user code may be running
        self._interrupted = False

    def run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        with self._lock:
            if self._interrupted:  # interrupted before it even started
                raise RunInterrupted()
            self._ident = threading.get_ident()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._ident = None
            _absorb_late_interrupt()

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if self._ident is not None:
                _inject(self._ident)


class ThreadCall:
    """fn(*args, **kwargs) in a new daemon thread, in a copy of the caller's context."""

    def __init__(self, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None,
                 name: str = "flowpod-call") -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.slot = Interruptible()
        self._callbacks: list[Callable[[], None]] = []
        self._callbacks_lock = threading.Lock()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._main, fn, args, kwargs or {}), name=name, daemon=True
        )

    def start(self) -> "ThreadCall":
        self._thread.start()
        return self

    def interrupt(self) -> None:
        self.slot.interrupt()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (from the worker thread) once the call has finished."""
        with self._callbacks_lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def _main(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            self.value = self.slot.run(fn, args, kwargs)
        except BaseException as exc:  # handed to the waiter, never lost in the thread
            self.error = exc
        with self._callbacks_lock:
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class LoopCall(ThreadCall):
    """`await fn(*args, **kwargs)` on a new event loop in a new daemon thread.

    interrupt() cancels the coroutine on its own loop (an exception injected into a thread
    that runs an event loop could land inside the loop's own bookkeeping); it then ends
    with RunInterrupted.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None,
                 name: str = "flowpod-loop-call") -> None:
        self._scope_lock = threading.Lock()
        self._scope: Any = None  # the coroutine's CancelScope, once it runs
        self._scope_loop: "asyncio.AbstractEventLoop | None" = None
        self._cancelled = False
        super().__init__(self._run_loop, (fn, args, kwargs or {}), name=name)

    def interrupt(self) -> None:
        with self._scope_lock:
            self._cancelled = True
            scope, loop = self._scope, self._scope_loop
        if scope is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(scope.cancel)
            except RuntimeError:  # the loop already closed: nothing left to cancel
                pass

    def _run_loop(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        import anyio

        return anyio.run(self._guarded, fn, args, kwargs)

    async def _guarded(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        import asyncio

        import anyio

        with anyio.CancelScope() as scope:
            with self._scope_lock:
                self._scope, self._scope_loop = scope, asyncio.get_running_loop()
                if self._cancelled:
                    scope.cancel()
            return await fn(*args, **kwargs)
        raise RunInterrupted()  # cancelled by interrupt(): the caller abandoned it


@dataclass(frozen=True, slots=True)
class RunLoop:
    """The event loop driving a flow run: is the caller on its thread, and how to reach it
    from another (anyio's token for from_thread calls, the asyncio loop for wake-ups that
    must not block the calling thread)."""

    loop: "asyncio.AbstractEventLoop"
    token: "EventLoopToken"
    thread: int

    @classmethod
    def current(cls) -> "RunLoop":
        """The loop running this coroutine (call it on the loop)."""
        import asyncio

        import anyio.lowlevel

        return cls(asyncio.get_running_loop(), anyio.lowlevel.current_token(),
                   threading.get_ident())

    def is_current_thread(self) -> bool:
        return threading.get_ident() == self.thread
