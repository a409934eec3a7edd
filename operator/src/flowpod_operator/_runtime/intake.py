"""Watch intake: events in, the index kept current, the affected FlowRun queued.

Role: the only code the kopf handlers (flowpod_operator._runtime.wiring) call. Each event
updates the in-memory Index and says "look at this run again" to the work queue; nothing
here decides or writes. A FlowRun body also feeds the EventRecorder, which announces the
states appended since the last body it saw. Callers: wiring (events), loop and actuator
(`remember`, for the bodies the API returns to the operator's own writes and re-reads).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

from flowpod import contract, states

from flowpod_operator._decisions.sharding import Shard
from flowpod_operator._decisions.views import FlowRunView, Key, Meta
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.metrics import Metrics
from flowpod_operator._runtime import queueing
from flowpod_operator._runtime.queueing import WorkQueue

__all__ = ["Intake"]

_FINAL = frozenset(t.value for t in states.TERMINAL_TYPES)
# How many deleted FlowRuns to remember (see Intake.remember); a bound, so memory stays flat.
_TOMBSTONES = 4096


class Intake:
    """Turns watch events into index updates and queued keys."""

    def __init__(self, index: Index, queue: WorkQueue, events: EventRecorder,
                 schedules: WorkQueue | None = None, *,
                 wake: Callable[[str, str | None], list[Key]] | None = None,
                 metrics: Metrics | None = None, shard: Shard = Shard()) -> None:
        self.index = index
        # With --shards, what other shards own never enters the Index: not decided, not
        # scheduled, not counted.
        self.shard = shard
        self.metrics = metrics
        self.queue = queue
        self.events = events
        # Deployment keys for the scheduler (flowpod_operator._runtime.scheduler).
        self.schedules = schedules if schedules is not None else WorkQueue()
        # Given a run's namespace and Deployment: the runs to look at once a run of it ended
        # or went away (the waiting runs that fit in its slot, the runs past the history
        # limits; flowpod_operator._runtime.loop).
        self.wake = wake
        # The uids of FlowRuns seen deleted. A reply to a write, or a re-read, that was in
        # flight when the DELETED event arrived must not bring the run back into the Index:
        # a ghost there would hold its concurrency slot until the next resync.
        self._gone: OrderedDict[Key, str | None] = OrderedDict()

    def on_flowrun(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if not self.shard.owns_flowrun(body):
            return
        key = FlowRunView(body).key
        if event_type is None and self._known(key, body):
            return  # listed again (a relist after an expired watch): nothing new
        self._poke_schedule(body)
        if event_type == "DELETED":
            self.forget(key, Meta(body).uid)
            return
        # A run first seen in the start-up listing (no event type) sets the Events' baseline.
        listed = event_type is None
        self.remember(body, baseline=listed)
        # A run found by a listing waits behind the runs that wait for a Job if it has its
        # Job already, and behind all others if it is final (see WorkQueue.add).
        rank = queueing.NOW
        if listed:
            rank = (queueing.LAST if _final(body) else
                    queueing.AFTER_NEW if self.index.has_jobs(key) else queueing.NOW)
        self.queue.add(key, rank=rank)

    def _known(self, key: Key, body: Mapping[str, Any]) -> bool:
        known = self.index.flowrun(key)
        if known is None:
            return False
        mine, theirs = Meta(body), Meta(known)
        return mine.uid == theirs.uid and mine.resource_version == theirs.resource_version

    def on_job(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if not self.shard.owns_child(body):
            return
        key = self.index.remove_job(body) if event_type == "DELETED" else self.index.put_job(body)
        self._poke(key)

    def on_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if not self.shard.owns_child(body):
            return
        key = self.index.remove_pod(body) if event_type == "DELETED" else self.index.put_pod(body)
        self._poke(key)

    def on_deployment(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        if not self.shard.owns_deployment(body):
            return
        meta = Meta(body)
        namespace, name = meta.namespace or "", meta.name or ""
        if event_type == "DELETED":
            self.index.remove_deployment(namespace, name)
            self.schedules.forget((namespace, name))
            return
        self.index.put_deployment(body)
        self.schedules.add((namespace, name))
        for key in self.index.waiting_for_deployment(namespace, name):
            self.queue.add(key)
        # Its limits may have changed: a raised concurrencyLimit lets runs start (queued
        # above), a lowered history limit makes old runs due for deletion.
        for key in self.wake(namespace, name) if self.wake is not None else ():
            self.queue.add(key)

    def remember(self, body: Mapping[str, Any], *, baseline: bool = False) -> None:
        """Store a FlowRun body unless a newer one is known, or the run was deleted
        meanwhile; announce its new states."""
        key, uid = FlowRunView(body).key, Meta(body).uid
        if key in self._gone:
            if self._gone[key] == uid:
                return
            del self._gone[key]  # a new FlowRun of the same name
        before = self.index.flowrun(key)
        if self.index.put_flowrun(body):
            self.events.observe(body, baseline=baseline)
            if self.metrics is not None:
                self.metrics.observe(before, body)
            if before is not None and not _final(before) and _final(body):
                self._released(body)

    def forget(self, key: Key, uid: str | None = None) -> None:
        """The FlowRun is gone: drop it, its Event marker and any timer of its key."""
        before = self.index.flowrun(key)
        gone = uid or (Meta(before).uid if before is not None else None)
        if gone is not None:
            self._gone[key] = gone
            while len(self._gone) > _TOMBSTONES:
                self._gone.popitem(last=False)
        self.index.remove_flowrun(key)
        self.events.forget(key)
        if self.metrics is not None:
            self.metrics.forget(key)
        self.queue.forget(key)
        if before is not None and not _final(before):
            self._released(before)

    def _released(self, body: Mapping[str, Any]) -> None:
        """A run ended or went away: queue the runs that this lets start or clean up."""
        if self.wake is not None:
            run = FlowRunView(body)
            for key in self.wake(run.key[0], run.deployment_name):
                self.queue.add(key)

    def _poke_schedule(self, body: Mapping[str, Any]) -> None:
        """A scheduled run changed: its Deployment's active count, last state and
        concurrencyPolicy depend on it."""
        if contract.LABEL_SCHEDULE in Meta(body).labels:
            run = FlowRunView(body)
            if run.deployment_name:
                self.schedules.add((run.key[0], run.deployment_name))

    def _poke(self, key: Key | None) -> None:
        if key is not None and self.index.flowrun(key) is not None:
            self.queue.add(key)


def _final(body: Mapping[str, Any]) -> bool:
    return FlowRunView(body).state_type in _FINAL
