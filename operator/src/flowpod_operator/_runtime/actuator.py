"""The actuator: carries out one decided Action against the API server.

Role: `Actuator.carry_out` takes an Action from the pure decision layer
(flowpod_operator._decisions.actions) and does it, in one `match` statement: create or
delete a Job, delete a Pod, write the status (guarded by resourceVersion), read what a
decision asked to see fresh, or schedule a later look. It records what its writes produced
in the index (through the intake) and posts an Event per Job/Pod action, then tells the
loop how to go on (a `Step`). A refused status write (409/422) re-reads the FlowRun: the
loop decides again on the fresh body, nothing is overwritten blindly. Caller:
flowpod_operator._runtime.loop.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from flowpod import contract

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import manifests, observations
from flowpod_operator._decisions.views import FlowRunView, Key, Meta
from flowpod_operator._runtime.intake import Intake
from flowpod_kube.errors import Ref
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.metrics import Metrics

__all__ = ["Actuator", "Sight", "Step", "selector"]

_log = logging.getLogger("flowpod_operator.reconciler")

Listing = tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]


class Step(enum.Enum):
    """How the loop goes on after one action."""

    DONE = "done"            # carried out; go on with the next action
    LATER = "later"          # a look is scheduled; nothing was done now
    REFRESHED = "refreshed"  # fresher objects were read: decide again on them
    REDECIDE = "redecide"    # the world differs from what was decided on: decide again
    STOP = "stop"            # stop here: the FlowRun is gone, or it must wait


@dataclass
class Sight:
    """What the next decision sees beyond the watch cache, for one reconcile."""

    children: Listing | None = None  # the run's Jobs and Pods, listed from the API
    deployment_fresh: bool = False   # the Deployment entry was just read from the API
    job_error: str | None = None     # why the API server refused the run's Job
    job_events: Sequence[Mapping[str, Any]] | None = None  # the current Job's Events
    # The runs it started, listed from the API (with shards, they may be another shard's).
    owned: tuple[Mapping[str, Any], ...] | None = None

    def cancelled(self, name: str) -> None:
        """A listed child was just cancelled: the next decision must not ask again."""
        if self.owned is not None:
            self.owned = tuple(
                {**child, "spec": {**(child.get("spec") or {}), "cancel": True}}
                if (child.get("metadata") or {}).get("name") == name else child
                for child in self.owned)


def selector(flowrun_name: str) -> str:
    """The label selector of a run's Jobs and Pods."""
    return f"{contract.LABEL_FLOW_RUN}={manifests.label_value(flowrun_name)}"


def _fields(key: Key, **extra: Any) -> dict[str, Any]:
    return {"namespace": key[0], "flowRun": key[1], **extra}


class Actuator:
    """Carries out Actions for the reconcile loop."""

    def __init__(self, api: KubeApi, intake: Intake, metrics: Metrics | None = None) -> None:
        self.api = api
        self.metrics = metrics
        self.intake = intake
        self.index = intake.index
        self.events = intake.events
        self.queue = intake.queue
        self.writes = 0
        self._labels_forbidden = False
        self._events_forbidden = False

    async def carry_out(self, key: Key, flowrun: Mapping[str, Any], action: act.Action,
                        now: datetime, sight: Sight) -> Step:
        match action:
            case act.Requeue(after=after):
                self.queue.add_after(key, after)
                return Step.LATER
            case act.Refresh(deployment=deployment, children=children, job_events=job):
                if job:
                    sight.job_events = await self._job_events(key, job)
                if children:
                    sight.children = await self.api.list_children(key[0], selector(key[1]))
                if deployment:
                    await self._refresh_deployment(key[0], flowrun)
                    sight.deployment_fresh = True
                return Step.REFRESHED
            case act.CreateJob():
                return await self._create_job(key, flowrun, action, sight)
            case act.DeleteJob(name=name):
                await self.api.delete_job(key[0], name)
                self.index.drop_job(key, name)
                self.events.record(flowrun, "Normal", "JobDeleted", f"Deleted Job {name}",
                                   action="DeleteJob")
                _log.info("deleted Job", extra=_fields(key, job=name))
                return Step.DONE
            case act.DeletePod():
                await self._delete_pod(key, flowrun, action)
                return Step.DONE
            case act.DeleteFlowRun(uid=uid, reason=reason):
                reply = await self.api.delete_flowrun(key[0], key[1], uid)
                if reply.status != 409:  # 409: a new run took the name; keep it
                    self.intake.forget(key)
                _log.info("deleted FlowRun", extra=_fields(key, reason=reason))
                return Step.STOP
            case act.CancelFlowRun(name=name, reason=reason):
                cancelled = await self.api.cancel_flowrun(key[0], name)
                # The next decision must not ask again: the child as it is now goes into
                # the Index if this operator holds it, else into the listing it came from.
                if cancelled is not None and self.index.flowrun((key[0], name)) is not None:
                    self.intake.remember(cancelled)
                sight.cancelled(name)
                _log.info("cancelled FlowRun", extra=_fields(key, child=name, reason=reason))
                return Step.DONE
            case act.WriteStatus():
                return await self._write_status(key, flowrun, action, now)
            case act.LabelFlowRun(labels=labels):
                return await self._label(key, labels)
        raise TypeError(f"unknown action {action!r}")

    async def _refresh_deployment(self, namespace: str, flowrun: Mapping[str, Any]) -> None:
        name = FlowRunView(flowrun).deployment_name or ""
        body = await self.api.get_deployment(namespace, name)
        if body is None:
            self.index.remove_deployment(namespace, name)
        else:
            self.index.put_deployment(body)

    async def _create_job(self, key: Key, flowrun: Mapping[str, Any], action: act.CreateJob,
                          sight: Sight) -> Step:
        reply = await self.api.create_job(key[0], action.manifest)
        if reply.ok:
            self.index.put_job(reply.body)  # the Pending state's Event names the Job
            if self.metrics is not None:
                self.metrics.job_created(key)
            _log.info("created Job", extra=_fields(key, job=action.name))
            return Step.DONE
        if reply.status == 409:
            # Deterministic names: normally this attempt's Job, made before a restart.
            existing = await self.api.get_job(key[0], action.name)
            if existing is None or not observations.belongs_to(existing, flowrun):
                # Left by a deleted FlowRun of the same name, on its way out.
                _log.info("waiting for the Job of an earlier FlowRun of this name to go",
                          extra=_fields(key, job=action.name))
                self.queue.add_after(key, 1.0)
                return Step.STOP
            self.index.put_job(existing)
            _log.info("Job already exists", extra=_fields(key, job=action.name))
            return Step.DONE
        if reply.status in (400, 422):
            _log.warning("Job refused by the API server",
                         extra=_fields(key, job=action.name, error=reply.message))
            sight.job_error = reply.message
            return Step.REDECIDE
        raise self.api.failure("create", Ref("Job", action.name, key[0]), reply)

    async def _delete_pod(self, key: Key, flowrun: Mapping[str, Any],
                          action: act.DeletePod) -> None:
        reply = await self.api.delete_pod(key[0], action.name, action.grace_seconds)
        body = reply.body if reply.body.get("kind") == "Pod" else None
        last = next((p for p in self.index.children(key)[1]
                     if Meta(p).name == action.name), None)
        if reply.status == 404 or action.grace_seconds == 0:
            if body or last:
                self.index.remove_pod(body or last)
        elif body is not None:
            self.index.put_pod(body)
        self.events.record(flowrun, "Normal", "PodDeleted",
                           f"Deleting pod {action.name} (grace period "
                           f"{action.grace_seconds}s)", action="DeletePod")
        _log.info("deleted pod", extra=_fields(key, pod=action.name,
                                               grace=action.grace_seconds))

    async def _job_events(self, key: Key, job: str) -> Sequence[Mapping[str, Any]]:
        """A Job's Events; none when the operator may not list Events (RBAC from an older
        chart): it says so once, and runs then wait without a reason until they time out."""
        if self._events_forbidden:
            return []
        reply = await self.api.list_events(key[0], "Job", job)
        if reply.status == 403:
            self._events_forbidden = True
            _log.warning("cannot list Events, so a Job that makes no pod is not explained "
                         "until pendingTimeoutSeconds; grant the operator `list` on events "
                         "(the Helm chart's Role does)", extra=_fields(key, error=reply.message))
            return []
        if not reply.ok:
            raise self.api.failure("LIST Events of", Ref("Job", job, key[0]), reply)
        return list(reply.body.get("items") or [])

    async def _label(self, key: Key, labels: Mapping[str, str]) -> Step:
        """Label the FlowRun. Labels help selection but decide nothing, so an operator
        without the permission (RBAC from an older chart) says so once and goes on."""
        if self._labels_forbidden:
            return Step.DONE
        reply = await self.api.patch_labels(key[0], key[1], labels)
        if reply.ok:
            self.intake.remember(reply.body)
            return Step.DONE
        if reply.status == 404:
            self.intake.forget(key)  # gone: release its slot as its DELETED event would
            return Step.STOP
        if reply.status == 403:
            self._labels_forbidden = True
            _log.warning("cannot label FlowRuns; grant the operator `patch` on flowruns "
                         "(the Helm chart's Role does) so `kubectl get fr -l "
                         f"{', '.join(labels)}=...` finds them",
                         extra=_fields(key, error=reply.message))
            return Step.DONE
        raise self.api.failure("PATCH labels of", Ref("FlowRun", key[1], key[0]), reply)

    async def _write_status(self, key: Key, flowrun: Mapping[str, Any],
                            action: act.WriteStatus, now: datetime) -> Step:
        run = FlowRunView(flowrun)
        tail = (await self.api.pod_log_tail(key[0], action.log_tail_of)
                if action.log_tail_of else None)
        patch = act.status_patch_for(action, run.status, generation=run.meta.generation,
                                     now=now, log_tail=tail)
        reply = await self.api.patch_status(key[0], key[1], run.meta.resource_version, patch)
        state = action.final_state
        if reply.ok:
            self.writes += 1
            self.intake.remember(reply.body)
            if action.event is not None:
                self.events.record(reply.body, *action.event, action="WriteStatus")
            _log.info("wrote status", extra=_fields(
                key, state=state.name if state else None,
                stateMessage=state.message if state else None,
                fields=sorted(action.fields)))
            return Step.DONE
        if reply.status == 404:
            self.intake.forget(key)  # gone: release its slot as its DELETED event would
            return Step.STOP
        if reply.status not in (409, 422):
            raise self.api.failure("PATCH status of", Ref("FlowRun", key[1], key[0]), reply)
        # 409: someone (the engine) wrote first. 422: the API server's transition rule
        # refused it, so the view was stale. Either way: re-read, then re-decide.
        level = logging.INFO if reply.status == 409 else logging.WARNING
        _log.log(level, "status write refused; re-reading", extra=_fields(
            key, status=reply.status, state=state.name if state else None,
            error=reply.message))
        fresh = await self.api.get_flowrun(key[0], key[1])
        if fresh is None:
            self.intake.forget(key)  # gone: release its slot as its DELETED event would
            return Step.STOP
        if reply.status == 422 and Meta(fresh).resource_version == run.meta.resource_version:
            raise self.api.failure("PATCH status (refused on an up-to-date FlowRun) of",
                                   Ref("FlowRun", key[1], key[0]), reply)
        self.intake.remember(fresh)
        return Step.REDECIDE
