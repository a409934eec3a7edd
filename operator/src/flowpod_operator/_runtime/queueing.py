"""A work queue of FlowRun keys: deduplicated, one worker per key, with delayed re-adds.

Role: sits between the watch handlers (which only say "look at this run again") and the
reconcile workers (flowpod_operator._runtime.loop). A key is queued at most once however
many events arrive for it; a key being reconciled is never handed to a second worker, and
is re-queued when it is marked again meanwhile (so no event is lost). `add_after` keeps the
earliest of several delays. Everything runs on one event loop.

Why not kopf's own per-object handlers: kopf serialises work per *object*, but a FlowRun's
decision depends on its Deployment, Jobs and Pods too. Keyed by FlowRun, this queue lets
every event of a run (a pod's, a Job's) mark one key, so exactly one worker decides for the
run on the whole picture, and bursts of events collapse into one decision. kopf's handlers
would also store their progress in the FlowRun (an annotation, a finalizer), which needs
write access to the user's object and drift with GitOps; the operator writes only `.status`
and, once, the flowpod.io/deployment label (which GitOps tools leave alone).
"""

from __future__ import annotations

import asyncio
from typing import Hashable

__all__ = ["WorkQueue"]


class WorkQueue:
    """Keys waiting to be reconciled."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable) -> None:
        """Reconcile `key` as soon as a worker is free."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Reconcile `key` after `delay` seconds (or sooner, if another add says so)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Hashable:
        """The next key; the caller must call `done(key)` when finished with it."""
        key = await self._ready.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: Hashable) -> None:
        """Drop a pending timer of a key that no longer exists."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queued), "active": len(self._active),
                "timers": len(self._timers)}
