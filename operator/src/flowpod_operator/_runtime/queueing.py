"""A work queue of FlowRun keys: deduplicated, one worker per key, with delayed re-adds.

Role: sits between the watch handlers (which only say "look at this run again") and the
reconcile workers (flowpod_operator._runtime.loop). A key is queued at most once however
many events arrive for it; a key being reconciled is never handed to a second worker, and
is re-queued when it is marked again meanwhile (so no event is lost). `add_after` keeps the
earliest of several delays. Everything runs on one event loop.

`add(key, rank=...)` queues a key behind the keys of lower ranks: after a restart the
start-up listing queues every run the operator knows, and a run created just then must not
wait behind them for its Job. So a listed run that already has its Job goes behind the
runs that wait for one (`AFTER_NEW`: its pod carries on meanwhile), and a final run behind
every other (`LAST`: it has at most clean-up or a record to finish). A key marked again
with a lower rank moves forward.

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
import itertools
from typing import Hashable

__all__ = ["WorkQueue", "NOW", "AFTER_NEW", "LAST"]

NOW, AFTER_NEW, LAST = 0, 1, 2  # ranks: a lower one is handed out first


class WorkQueue:
    """Keys waiting to be reconciled."""

    def __init__(self) -> None:
        # (rank, arrival, key); an entry whose rank no longer matches _queued is stale (the
        # key moved forward) and skipped.
        self._ready: asyncio.PriorityQueue[tuple[int, int, Hashable]] = asyncio.PriorityQueue()
        self._arrivals = itertools.count()
        self._queued: dict[Hashable, int] = {}
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable, *, rank: int = NOW) -> None:
        """Reconcile `key` as soon as a worker is free and no key of a lower rank waits."""
        if key in self._active:
            self._dirty.add(key)
        elif self._queued.get(key, LAST + 1) > rank:
            self._queued[key] = rank
            self._ready.put_nowait((rank, next(self._arrivals), key))

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
        while True:
            rank, _, key = await self._ready.get()
            if self._queued.get(key) == rank:
                break
        del self._queued[key]
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
