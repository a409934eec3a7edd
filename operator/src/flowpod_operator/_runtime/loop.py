"""The reconcile loop: watch events in, decisions out, actions carried out.

Role: the `Reconciler` keeps the in-memory Index current from watch events (fed by the
kopf handlers in flowpod_operator._wiring), queues the affected FlowRun, and its workers
run decide -> act -> re-observe until the run needs nothing more. A refused status write
(409) re-reads the FlowRun and decides again; nothing is overwritten blindly. A periodic
resync re-queues every unfinished run, so a missed event or a restart never leaves one
stuck. Callers: flowpod_operator.running (constructs and runs it), _wiring (intake).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from datetime import datetime
from typing import Any, Callable, Mapping

from flowpod import flowruns

from flowpod_operator import _acting, _deciding, _eventing, _indexing, _manifests
from flowpod_operator import _actions as act
from flowpod_operator import _observations
from flowpod_operator import _queueing

__all__ = ["Reconciler"]

_log = logging.getLogger("flowpod_operator.reconciler")


class _Outcome(enum.Enum):
    DONE = "done"            # carried out; go on with the next action
    REDECIDE = "redecide"    # the world differs from what was decided on: decide again
    GONE = "gone"            # stop here: the FlowRun is gone, or it must wait


class Reconciler:
    """Owns the index, the work queue and the workers."""

    def __init__(self, index: _indexing.Index, api: _acting.KubeApi,
                 events: _eventing.EventRecorder, *, clock: Callable[[], datetime],
                 policy: _deciding.Policy = _deciding.Policy(), workers: int = 32,
                 resync_seconds: float = 30.0, deep_every: int = 10,
                 max_steps: int = 8) -> None:
        self.index = index
        self.api = api
        self.events = events
        self.queue = _queueing.WorkQueue()
        self.clock = clock
        self.policy = policy
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.deep_every = deep_every
        self._deep: set[_indexing.Key] = set()
        self.max_steps = max_steps
        self._failures: dict[_indexing.Key, int] = {}
        self.reconciles = 0
        self.writes = 0

    # --- intake from the watches -----------------------------------------------------------
    def on_flowrun(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = _indexing.key_of_flowrun(body)
        if event_type == "DELETED":
            self.index.remove_flowrun(key)
            self.events.forget(key)
            self.queue.forget(key)
            return
        if self.index.put_flowrun(body):
            # A run first seen in the start-up listing sets the baseline for its Events.
            self.events.observe(body, baseline=event_type is None)
        self.queue.add(key)

    def on_job(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = self.index.remove_job(body) if event_type == "DELETED" else self.index.put_job(body)
        self._poke(key)

    def on_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = self.index.remove_pod(body) if event_type == "DELETED" else self.index.put_pod(body)
        self._poke(key)

    def on_deployment(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        if event_type == "DELETED":
            self.index.remove_deployment(meta["namespace"], meta["name"])
            return
        self.index.put_deployment(body)
        for key in self.index.waiting_for_deployment(meta["namespace"], meta["name"]):
            self.queue.add(key)

    def _poke(self, key: _indexing.Key | None) -> None:
        if key is not None and self.index.flowrun(key) is not None:
            self.queue.add(key)

    # --- running -----------------------------------------------------------------------------
    def start(self) -> list[asyncio.Task[None]]:
        """Start the workers, the resync timer and the Event posters; the caller cancels
        them. Created synchronously, before kopf starts, so kopf never takes them for
        tasks of its own left hanging at shutdown."""
        tasks = [asyncio.create_task(self._work(), name=f"flowpod worker {n}")
                 for n in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync(), name="flowpod resync"))
        return tasks + self.events.start()

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
        while True:
            key = await self.queue.get()
            try:
                await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                count = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(2.0 ** count, 60.0)
                _log.warning("reconcile failed; retrying", exc_info=not isinstance(
                    exc, _acting.ApiError), extra={
                    "namespace": key[0], "flowRun": key[1], "error": str(exc),
                    "retryIn": delay})
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    # --- one run ---------------------------------------------------------------------------
    async def reconcile(self, key: _indexing.Key) -> None:
        """Decide and act for one FlowRun until it needs nothing more right now."""
        self.reconciles += 1
        children = None
        if key in self._deep:
            self._deep.discard(key)
            fresh = await self.api.get_flowrun(*key)
            if fresh is None:
                self.on_flowrun("DELETED", self.index.flowrun(key) or _stub(key))
                return
            self._store(fresh)
            children = await self.api.list_children(key[0], _selector(key[1]))
        deployment_fresh = False
        job_error: str | None = None
        for _ in range(self.max_steps):
            flowrun = self.index.flowrun(key)
            if flowrun is None:
                return
            now = self.clock()
            observation = self.index.observe(key, children=children,
                                             deployment_fresh=deployment_fresh,
                                             job_error=job_error)
            actions = _deciding.decide(observation, now, self.policy)
            progressed = refreshed = False
            for action in actions:
                if isinstance(action, act.Requeue):
                    self.queue.add_after(key, action.after)
                    continue
                progressed = True
                if isinstance(action, act.Refresh):
                    refreshed = True
                    if action.children:
                        children = await self.api.list_children(key[0], _selector(key[1]))
                    if action.deployment:
                        await self._refresh_deployment(key[0], flowrun)
                        deployment_fresh = True
                    break
                outcome, job_error = await self._apply(key, flowrun, action, now)
                if outcome is _Outcome.GONE:
                    return
                if outcome is _Outcome.REDECIDE:
                    break
            if not progressed:
                return
            if not refreshed:
                children = None  # our own changes made any listing stale
        _log.warning("run did not settle; looking again shortly",
                     extra={"namespace": key[0], "flowRun": key[1]})
        self.queue.add_after(key, 1.0)

    async def _refresh_deployment(self, namespace: str, flowrun: Mapping[str, Any]) -> None:
        name = flowrun["spec"]["deploymentName"]
        body = await self.api.get_deployment(namespace, name)
        if body is None:
            self.index.remove_deployment(namespace, name)
        else:
            self.index.put_deployment(body)

    async def _apply(self, key: _indexing.Key, flowrun: Mapping[str, Any], action: act.Action,
                     now: datetime) -> tuple[_Outcome, str | None]:
        namespace = key[0]
        if isinstance(action, act.CreateJob):
            return await self._create_job(key, flowrun, action)
        if isinstance(action, act.DeleteJob):
            await self.api.delete_job(namespace, action.name)
            self.index.drop_job(key, action.name)
            self.events.record(flowrun, "Normal", "JobDeleted", f"Deleted Job {action.name}")
            _log.info("deleted Job", extra=_fields(key, job=action.name))
            return _Outcome.DONE, None
        if isinstance(action, act.DeletePod):
            await self._delete_pod(key, flowrun, action)
            return _Outcome.DONE, None
        if isinstance(action, act.WriteStatus):
            return await self._write_status(key, flowrun, action, now), None
        raise TypeError(f"unknown action {action!r}")

    async def _create_job(self, key: _indexing.Key, flowrun: Mapping[str, Any],
                          action: act.CreateJob) -> tuple[_Outcome, str | None]:
        reply = await self.api.create_job(key[0], action.manifest)
        if reply.ok:
            self.index.put_job(reply.body)  # the Pending state's Event names the Job
            _log.info("created Job", extra=_fields(key, job=action.name))
            return _Outcome.DONE, None
        if reply.status == 409:
            # Deterministic names: normally this attempt's Job, made before a restart.
            existing = await self.api.get_job(key[0], action.name)
            if existing is None or not _observations.belongs_to(existing, flowrun):
                # Left by a deleted FlowRun of the same name, on its way out.
                _log.info("waiting for the Job of an earlier FlowRun of this name to go",
                          extra=_fields(key, job=action.name))
                self.queue.add_after(key, 1.0)
                return _Outcome.GONE, None
            self.index.put_job(existing)
            _log.info("Job already exists", extra=_fields(key, job=action.name))
            return _Outcome.DONE, None
        if reply.status in (400, 422):
            _log.warning("Job refused by the API server",
                         extra=_fields(key, job=action.name, error=reply.message))
            return _Outcome.REDECIDE, reply.message
        raise _acting.ApiError(f"create Job {key[0]}/{action.name}", reply)

    async def _delete_pod(self, key: _indexing.Key, flowrun: Mapping[str, Any],
                          action: act.DeletePod) -> None:
        reply = await self.api.delete_pod(key[0], action.name, action.grace_seconds)
        body = reply.body if reply.body.get("kind") == "Pod" else None
        last = next((p for p in self.index.children(key)[1]
                     if p["metadata"]["name"] == action.name), None)
        if reply.status == 404 or action.grace_seconds == 0:
            if body or last:
                self.index.remove_pod(body or last)
        elif body is not None:
            self.index.put_pod(body)
        self.events.record(flowrun, "Normal", "PodDeleted",
                           f"Deleting pod {action.name} (grace period "
                           f"{action.grace_seconds}s)")
        _log.info("deleted pod", extra=_fields(key, pod=action.name,
                                               grace=action.grace_seconds))

    async def _write_status(self, key: _indexing.Key, flowrun: Mapping[str, Any],
                            action: act.WriteStatus, now: datetime) -> _Outcome:
        meta = flowrun["metadata"]
        patch = act.status_patch_for(action, flowrun.get("status"),
                                     generation=int(meta.get("generation") or 1), now=now)
        reply = await self.api.patch_status(key[0], key[1], meta.get("resourceVersion"), patch)
        state = action.final_state
        if reply.ok:
            self.writes += 1
            self._store(reply.body)
            _log.info("wrote status", extra=_fields(
                key, state=state.name if state else None,
                stateMessage=state.message if state else None,
                fields=sorted(action.fields)))
            return _Outcome.DONE
        if reply.status == 404:
            self.index.remove_flowrun(key)
            return _Outcome.GONE
        if reply.status not in (409, 422):
            raise _acting.ApiError(f"PATCH FlowRun {key[0]}/{key[1]} status", reply)
        # 409: someone (the engine) wrote first. 422: the API server's transition rule
        # refused it, so the view was stale. Either way: re-read, then re-decide.
        level = logging.INFO if reply.status == 409 else logging.WARNING
        _log.log(level, "status write refused; re-reading", extra=_fields(
            key, status=reply.status, state=state.name if state else None,
            error=reply.message))
        fresh = await self.api.get_flowrun(key[0], key[1])
        if fresh is None:
            self.index.remove_flowrun(key)
            return _Outcome.GONE
        if reply.status == 422 and fresh["metadata"].get("resourceVersion") == meta.get(
                "resourceVersion"):
            raise _acting.ApiError("status write refused on an up-to-date FlowRun", reply)
        self._store(fresh)
        return _Outcome.REDECIDE

    def _store(self, body: Mapping[str, Any]) -> None:
        if self.index.put_flowrun(body):
            self.events.observe(body)

    def stats(self) -> dict[str, Any]:
        return {**self.index.sizes(), **self.queue.stats(), "reconciles": self.reconciles,
                "statusWrites": self.writes, "eventsPending": self.events.pending(),
                "eventsDropped": self.events.dropped}


def _stub(key: _indexing.Key) -> dict[str, Any]:
    return {"metadata": {"namespace": key[0], "name": key[1]}}


def _selector(flowrun_name: str) -> str:
    return f"{flowruns.LABEL_FLOW_RUN}={_manifests.label_value(flowrun_name)}"


def _fields(key: _indexing.Key, **extra: Any) -> dict[str, Any]:
    return {"namespace": key[0], "flowRun": key[1], **extra}
