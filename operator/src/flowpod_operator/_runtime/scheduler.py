"""The scheduler: a Deployment's schedules turned into FlowRuns at their due times.

Role: a queue of Deployment keys (fed by the intake on every Deployment event and every
event of a scheduled run) and several workers; the queue hands a key to one worker at a
time, so two looks at one Deployment never race, while a slow call for one Deployment
never holds up another's due runs. For each key it asks the pure
flowpod_operator._decisions.scheduling.plan what is due, creates those FlowRuns (a 409
AlreadyExists means an earlier look already did: names come from the due time), cancels the
runs Replace displaces, writes the Deployment's status when it changed, and re-queues the
key for its next due time, so it wakes when something is due rather than polling. A
Deployment whose schedule cannot be read only gets Ready=False; the others go on.

Status writes: a change that records progress no run records (scheduledThrough moved past
due times skipped by policy, the Ready condition, the schedule summary) is written at once.
A change only in the summary fields (SUMMARY_FIELDS: activeRuns, the last run's name and
state, upcoming times), or in scheduledThrough up to the due time of a run just created
(the run itself is the record: the plan reads it back), waits up to `summary_lag` seconds
but at most half-way to the next due time: every event of a scheduled run would otherwise
cost one more API write, and when many Deployments are due in the same second the creates
come first and the status writes fall between the bursts.
Callers: flowpod_operator._runtime.loop (constructs and starts it), .intake (feeds it).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable, Mapping

from flowpod import contract
from flowpod_operator._decisions import scheduling
from flowpod_kube.errors import Ref
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.queueing import WorkQueue

__all__ = ["Scheduler"]

_log = logging.getLogger("flowpod_operator.scheduler")
# Timers of the event loop run on a monotonic clock, the due times on the wall clock: waking
# a hair late makes sure the wall clock has reached the due time too.
_SLACK = 0.02
# Status fields that only summarise the runs; a change in them alone may wait (see above).
SUMMARY_FIELDS = frozenset({"activeRuns", "lastRunName", "lastRunState", "lastScheduleTime",
                            "nextScheduleTimes"})


class Scheduler:
    """Owns the Deployment queue and the workers that carry out scheduling plans."""

    def __init__(self, index: Index, api: KubeApi, clock: Callable[[], datetime],
                 remember: Callable[..., None], *,
                 # As many as the FlowRun loop: when every Deployment is due at the same
                 # second (cron's minute, aligned intervals), each create waits on the API
                 # server, so the burst drains at about workers / (create latency) per second.
                 workers: int = 32,
                 summary_lag: float = 10.0) -> None:
        self.index = index
        self.api = api
        self.clock = clock
        self.remember = remember
        self.queue = WorkQueue()
        self.workers = workers
        self.summary_lag = summary_lag
        # Deployment key -> event-loop time by which its held summary change is written.
        self._summary_due: dict[tuple[str, str], float] = {}
        self.created = 0
        self.status_writes = 0

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._work(), name=f"flowpod scheduler {n}")
                for n in range(self.workers)]

    async def _work(self) -> None:
        failures: dict[tuple[str, str], int] = {}
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
                failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                count = failures[key] = failures.get(key, 0) + 1
                delay = min(2.0 ** count, 60.0)
                _log.warning("scheduling failed; retrying", extra={
                    "namespace": key[0], "deployment": key[1], "error": str(exc),
                    "retryIn": delay})
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    async def reconcile(self, key: tuple[str, str]) -> None:
        deployment = self.index.deployment(*key)
        if deployment is None:
            self.queue.forget(key)
            self._summary_due.pop(key, None)
            return
        now = self.clock()
        runs = self.index.scheduled_runs(*key)
        plan = scheduling.plan(deployment, runs, now)
        for start in plan.starts:
            reply = await self.api.create_flowrun(key[0], start.manifest)
            if reply.ok:
                self.created += 1
                self.remember(reply.body)
            elif reply.status != 409:  # 409: this due time's run exists already
                raise self.api.failure("CREATE", Ref("FlowRun", start.name, key[0]), reply)
        for name in plan.cancels:
            await self.api.cancel_flowrun(key[0], name)
        await self._write_status(key, deployment, plan, runs)
        if plan.wake_at is not None:
            delay = (plan.wake_at - self.clock()).total_seconds() + _SLACK
            self.queue.add_after(key, max(delay, _SLACK))


    async def _write_status(self, key: tuple[str, str], deployment: Mapping[str, Any],
                            plan: scheduling.Plan, runs: list[dict[str, Any]]) -> None:
        old = _comparable(deployment.get("status") or {}, plan.status)
        if plan.status == old:
            self._summary_due.pop(key, None)
            return
        if _may_wait(plan, old, runs):
            now = asyncio.get_running_loop().time()
            due = self._summary_due.setdefault(key, now + self._hold(plan))
            if due > now:
                self.queue.add_after(key, due - now)
                return
        self._summary_due.pop(key, None)
        reply = await self.api.patch_deployment_status(*key, plan.status)
        self.status_writes += 1
        if reply.ok:
            self.index.put_deployment(reply.body)
        elif reply.status != 404:
            raise self.api.failure("PATCH status", Ref("Deployment", key[1], key[0]), reply)


    def _hold(self, plan: scheduling.Plan) -> float:
        """How long a change that may wait waits: `summary_lag`, but at most half-way to the
        next due time, so that the write falls between two bursts of due runs (cron's
        minute, aligned intervals) instead of into the next one."""
        if plan.wake_at is None:
            return self.summary_lag
        gap = (plan.wake_at - self.clock()).total_seconds()
        return max(_SLACK, min(self.summary_lag, gap / 2))


def _may_wait(plan: scheduling.Plan, old: Mapping[str, Any],
              runs: list[dict[str, Any]]) -> bool:
    """Only the summary changed, or scheduledThrough moved to the due time of a run that
    exists (or was just created): that run records the progress itself
    (flowpod_operator._decisions.scheduling reads it back after a restart)."""
    new, before = _progress(plan.status), _progress(old)
    through = new.get("scheduledThrough")
    recorded = {contract.format_time(s.due, fraction=False) for s in plan.starts}
    recorded.update((r.get("spec") or {}).get("scheduledTime") for r in runs)
    if through in recorded:
        new.pop("scheduledThrough", None)
        before.pop("scheduledThrough", None)
    return new == before


def _progress(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in SUMMARY_FIELDS}


def _comparable(old: dict[str, object], new: dict[str, object]) -> dict[str, object]:
    """The old status restricted to the keys the plan writes, for a no-change check."""
    return {k: old.get(k) for k in new}

