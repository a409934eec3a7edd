"""The bounded worker pool that runs submitted and mapped sync task runs.

Role: `TaskPool` keeps a queue of ready sync task runs and drains it with at most
`task_workers` worker threads, each started with anyio.to_thread.run_sync under
the flow run's CapacityLimiter. A worker drives many task-run cores in a row with
blocking ops (flowpod._runtime.ops), so a `.map()` over a thousand items costs one thread
start per worker instead of a loop-to-thread round trip per item; a thread that blocks on
one of their futures runs queued runs itself meanwhile (`run_queued`). Runs whose
upstream futures are not finished wait on the event loop first, so a waiting run
never holds a worker (that could deadlock a bounded pool). Callers:
flowpod._runtime.flow_engine (one per attempt), flowpod._runtime.task_calls (submit).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from flowpod._runtime.threads import Interruptible

if TYPE_CHECKING:
    from anyio import CapacityLimiter

__all__ = ["TaskPool"]


class TaskPool:
    """Ready sync task runs of one flow run, and the workers draining them."""

    def __init__(self, limiter: "CapacityLimiter", max_workers: int,
                 run_one: Callable[[Any], None], *, strict: bool = False) -> None:
        self._limiter = limiter  # the run tree's: bounds worker threads across subflows
        self._max_workers = max_workers
        # strict: max_workers bounds the task runs at once, a waiting thread's included;
        # else it bounds the worker threads, and a waiting thread helps beyond it.
        self._strict = strict
        self._run_one = run_one  # drives one queued item to its final state
        self._lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._workers = 0
        self._slots: set[Interruptible] = set()

    def put(self, items: list[Any]) -> int:
        """Queue items; returns how many new workers the caller must start."""
        with self._lock:
            self._items.extend(items)
            new = min(self._max_workers - self._workers, len(self._items))
            new = max(new, 0)
            self._workers += new
        return new

    async def worker(self) -> None:
        """A loop-side task that lends one bounded worker thread to the queue."""
        import anyio

        slot = Interruptible()
        with self._lock:
            self._slots.add(slot)
        try:
            await anyio.to_thread.run_sync(slot.run, self._drain, (), {},
                                           abandon_on_cancel=True,
                                           limiter=self._limiter)
        finally:
            with self._lock:
                self._slots.discard(slot)

    def run_queued(self) -> bool:
        """Run one queued task run in the calling thread, which would otherwise only wait
        for a future; False when nothing is queued. The waiting thread is awake already, so
        this skips a hand-off to a worker for each run, which is most of what a quick run
        costs when it goes through the pool. A strict pool lends the thread one of its
        slots (False when all are taken), so the limit holds whoever runs the task."""
        if self._strict:
            return self._run_queued_in_slot()
        try:
            item = self._items.popleft()  # atomic: no lock on the hot path
        except IndexError:
            return False
        self._run_one(item)
        return True

    def _run_queued_in_slot(self) -> bool:
        with self._lock:
            if not self._items or self._workers >= self._max_workers:
                return False
            item = self._items.popleft()
            self._workers += 1
        try:
            self._run_one(item)
        finally:
            with self._lock:
                # Runs queued while this thread held the last slot found no slot to start a
                # worker in: this thread drains them as that worker, so none is stranded.
                stranded = self._workers == 1 and bool(self._items)
                if not stranded:
                    self._workers -= 1
            if stranded:
                self._drain()
        return True

    def interrupt(self) -> None:
        """Stop every worker's current task run (timeout or SIGTERM of the flow run)."""
        with self._lock:
            slots = list(self._slots)
            self._items.clear()
        for slot in slots:
            slot.interrupt()

    def _drain(self) -> None:
        while True:
            try:
                item = self._items.popleft()  # atomic: no lock on the hot path
            except IndexError:
                with self._lock:  # put() adds items and counts workers under this lock
                    if self._items:
                        continue
                    self._workers -= 1
                    return
            self._run_one(item)
