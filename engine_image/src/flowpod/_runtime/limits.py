"""Per-tag concurrency limits for task runs ("at most N `db` tasks at once").

Role: `TagLimits` holds one semaphore per limited tag, shared by every task run of
a flow run and its subflows, whichever thread or event loop runs them (so it uses
threading primitives). The task engine's ops (flowpod._runtime.ops) acquire slots before
a task runs and release them after. Built by flowpod._runtime.flow_engine from the flow's
`tag_limits` and the entry point's override.
"""

from __future__ import annotations

import threading
from typing import Awaitable, Callable, Iterable, Mapping

__all__ = ["TagLimits"]

_POLL = 0.01  # seconds between async retries for a slot; slots are held for a task's length


class TagLimits:
    """Semaphores by tag; tags without a limit are free."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        for tag, limit in (limits or {}).items():
            if not isinstance(limit, int) or limit < 1:
                raise ValueError(
                    f"tag_limits[{tag!r}] must be a positive integer, got {limit!r}"
                )
        self._semaphores = {tag: threading.BoundedSemaphore(n) for tag, n in (limits or {}).items()}

    def limited(self, tags: Iterable[str]) -> list[threading.BoundedSemaphore]:
        """The semaphores to take for these tags, in a fixed order (avoids deadlock)."""
        if not self._semaphores:
            return []
        return [self._semaphores[t] for t in sorted(tags) if t in self._semaphores]

    @staticmethod
    def try_acquire(semaphores: list[threading.BoundedSemaphore]) -> bool:
        """Take all or none, without waiting."""
        taken = []
        for semaphore in semaphores:
            if not semaphore.acquire(blocking=False):
                for held in taken:
                    held.release()
                return False
            taken.append(semaphore)
        return True

    def acquire_blocking(self, semaphores: list[threading.BoundedSemaphore],
                         sleep: Callable[[float], None]) -> None:
        while not self.try_acquire(semaphores):
            sleep(_POLL)

    async def acquire_async(self, semaphores: list[threading.BoundedSemaphore],
                            asleep: Callable[[float], Awaitable[None]]) -> None:
        # Polling keeps the event loop free and needs no thread per waiter.
        while not self.try_acquire(semaphores):
            await asleep(_POLL)

    @staticmethod
    def release(semaphores: list[threading.BoundedSemaphore]) -> None:
        for semaphore in semaphores:
            semaphore.release()
