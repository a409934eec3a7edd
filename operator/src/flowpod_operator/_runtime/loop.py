"""The reconcile loop: queued FlowRuns in, decide -> act -> re-observe, until settled.

Role: the `Reconciler` owns the work queue, the intake (flowpod_operator._runtime.intake,
which the kopf handlers feed) and the actuator (._runtime.actuator, which carries out the
actions). Its workers take one FlowRun key at a time and run the pure decision
(flowpod_operator._decisions.deciding) on what the index shows, hand each action to the
actuator, and decide again until the run needs nothing more right now. A periodic resync
re-queues every unfinished run, and every `deep_every`-th round reads those runs from the
API itself, so a missed event or a restart never leaves one stuck. Each decision also gets
the run's concurrency verdict (._runtime.slots) and, for a final run, whether it is past its
Deployment's history limits (._runtime.history). Callers:
flowpod_operator.running (constructs and starts it), ._runtime.wiring (intake, stats).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Awaitable, Callable

from flowpod import states

from flowpod_operator._decisions import deciding, owned
from flowpod_operator._decisions.actions import CreateJob
from flowpod_operator._decisions.sharding import Shard
from flowpod_operator._decisions.views import FlowRunView, Key
from flowpod_operator._runtime.actuator import Actuator, Sight, Step, selector
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.history import History
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import ApiError, KubeApi
from flowpod_operator._runtime.metrics import Metrics
from flowpod_operator._runtime.queueing import WorkQueue
from flowpod_operator._runtime.scheduler import Scheduler
from flowpod_operator._runtime.slots import Slots

__all__ = ["Reconciler"]

_log = logging.getLogger("flowpod_operator.reconciler")
_FINAL = frozenset(t.value for t in states.TERMINAL_TYPES)


class Reconciler:
    """Owns the work queue, the intake, the actuator and the workers."""

    def __init__(self, index: Index, api: KubeApi, events: EventRecorder, *,
                 clock: Callable[[], datetime],
                 policy: deciding.Policy = deciding.Policy(), workers: int = 32,
                 resync_seconds: float = 30.0, deep_every: int = 10,
                 max_steps: int = 8, max_concurrent_runs: int | None = None,
                 metrics: Metrics | None = None, shard: Shard = Shard()) -> None:
        self.index = index
        self.api = api
        self.events = events
        self.queue = WorkQueue()
        self.slots = Slots(index, clock, max_concurrent_runs)
        self.history = History(index)
        self.scheduler = Scheduler(index, api, clock, lambda body: self.intake.remember(body))
        self.metrics = metrics if metrics is not None else Metrics(index.flowrun_items)
        self.intake = Intake(index, self.queue, events, self.scheduler.queue,
                             wake=self._released, metrics=self.metrics, shard=shard)
        self.actuator = Actuator(api, self.intake, self.metrics)
        self.clock = clock
        self.policy = policy
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.deep_every = deep_every
        self._deep: set[Key] = set()
        self.max_steps = max_steps
        self._failures: dict[Key, int] = {}
        self.reconciles = 0
        self._primed = asyncio.Event()

    def start(self, first: Awaitable[None] | None = None) -> list[asyncio.Task[None]]:
        """Start the workers, the resync timer and the Event posters; the caller cancels
        them. Created synchronously, before kopf starts, so kopf never takes them for
        tasks of its own left hanging at shutdown. The workers decide nothing until
        `first` (the start-up listing, flowpod_operator._runtime.priming) has finished."""
        tasks = [asyncio.create_task(self._work(), name=f"flowpod worker {n}")
                 for n in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync(), name="flowpod resync"))
        tasks.append(asyncio.create_task(self._prime(first), name="flowpod priming"))
        return tasks + self.scheduler.start() + self.events.start()

    async def _prime(self, first: Awaitable[None] | None) -> None:
        if first is not None:
            await first
        self._primed.set()

    async def _resync(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.resync_seconds)
            rounds += 1
            keys = self.index.unfinished_keys()
            if rounds % self.deep_every == 0:
                # A watch that reconnects re-lists, but does not replay the deletions it
                # missed; now and then, look at each unfinished run from the API itself.
                self._deep.update(keys)
            for key in keys:
                self.queue.add(key)

    async def _work(self) -> None:
        await self._primed.wait()
        while True:
            key = await self.queue.get()
            try:
                with self.metrics.reconcile.time():
                    await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.reconcile_errors.inc()
                count = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(2.0 ** count, 60.0)
                _log.warning("reconcile failed; retrying", exc_info=not isinstance(
                    exc, ApiError), extra={
                    "namespace": key[0], "flowRun": key[1], "error": str(exc),
                    "retryIn": delay})
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    async def reconcile(self, key: Key) -> None:
        """Decide and act for one FlowRun until it needs nothing more right now."""
        self.reconciles += 1
        try:
            await self._reconcile(key)
        finally:
            self.slots.starting.discard(key)  # recorded by now, or to be decided again

    async def _reconcile(self, key: Key) -> None:
        sight = Sight()
        if key in self._deep:
            self._deep.discard(key)
            if not await self._look_deep(key, sight):
                return
        await self._look_for_children(key, sight)
        for _ in range(self.max_steps):
            flowrun = self.index.flowrun(key)
            if flowrun is None:
                return
            now = self.clock()
            observation = self.index.observe(key, children=sight.children,
                                             deployment_fresh=sight.deployment_fresh,
                                             job_error=sight.job_error,
                                             job_events=sight.job_events,
                                             slot=self.slots.verdict(flowrun),
                                             beyond_history=self.history.note(flowrun),
                                             owned_runs=sight.owned)
            sight.job_error = None  # a refused Job is news for the next decision only
            progressed = refreshed = False
            for action in deciding.decide(observation, now, self.policy):
                if isinstance(action, CreateJob) and observation.slot is not None:
                    # Holds its slot from now on, before the Index shows its Job or status.
                    self.slots.starting.add(key)
                step = await self.actuator.carry_out(key, flowrun, action, now, sight)
                if step is Step.LATER:
                    continue
                progressed = True
                if step is Step.STOP:
                    return
                if step in (Step.REFRESHED, Step.REDECIDE):
                    refreshed = step is Step.REFRESHED
                    break
            if not progressed:
                return
            if not refreshed:
                sight.children = None  # our own changes made any listing stale
        _log.warning("run did not settle; looking again shortly",
                     extra={"namespace": key[0], "flowRun": key[1]})
        self.queue.add_after(key, 1.0)

    async def _look_deep(self, key: Key, sight: Sight) -> bool:
        """Read the run and its children from the API; False when the run is gone."""
        fresh = await self.api.get_flowrun(*key)
        if fresh is None:
            self.intake.on_flowrun("DELETED", self.index.flowrun(key) or _stub(key))
            return False
        self.intake.remember(fresh)
        sight.children = await self.api.list_children(key[0], selector(key[1]))
        return True

    async def _look_for_children(self, key: Key, sight: Sight) -> None:
        """With shards, a run's children may belong to another shard and so never reach
        this Index: a run that is to cancel its children lists them from the API (while it
        is not final yet: its cancellation is decided before it ends)."""
        flowrun = self.index.flowrun(key)
        if (self.intake.shard.count > 1 and flowrun is not None
                and owned.cancels_children(flowrun)
                and FlowRunView(flowrun).state_type not in _FINAL):
            sight.owned = tuple(await self.api.list_owned_flowruns(*key))

    def _released(self, namespace: str, deployment: str | None) -> list[Key]:
        """A run of this Deployment ended or went away: the runs to look at now (those that
        fit in the slot it freed, those past the history limits)."""
        return self.slots.wake(namespace, deployment) + self.history.victims(namespace,
                                                                             deployment)

    def stats(self) -> dict[str, Any]:
        return {**self.index.sizes(), **self.queue.stats(), "reconciles": self.reconciles,
                "statusWrites": self.actuator.writes,
                "scheduledRuns": self.scheduler.created,
                "scheduleStatusWrites": self.scheduler.status_writes,
                "eventsPending": self.events.pending(), "eventsDropped": self.events.dropped}


def _stub(key: Key) -> dict[str, Any]:
    return {"metadata": {"namespace": key[0], "name": key[1]}}
