"""kopf wiring, kept thin: watches of Deployments, Jobs and Pods feed the Reconciler.

Role: build a kopf registry and settings for the operator. Only `@kopf.on.event` handlers
are used (no on.create/on.update): they need no finalizers, progress annotations or
"last-handled" patches, so the hot path of a new FlowRun is one watch event and our own
two writes (the Job, the status), and nothing but `.status` and one label
(flowpod.io/deployment) is ever written to a FlowRun (ARCHITECTURE.md, "One FlowRun, end to
end", says why, with figures). Jobs and Pods are watched with a server-side label selector
(flowpod.io/flow-run exists), so unrelated pods never reach the operator. No kopf
indexes: they would make kopf hold every object's handler until their kinds are listed,
and waking those held handlers costs time quadratic in the number of objects; the
Reconciler instead waits for its own start-up listing (flowpod_operator._runtime.priming),
so after a restart the first decision about a run still sees its Job and Pod. Handlers
only feed the Intake (flowpod_operator._runtime.intake). FlowRuns, the kind there are
thousands of, are listed and watched by the operator itself
(flowpod_operator._runtime.watching says why).
Callers: flowpod_operator.running.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import kopf

from flowpod import contract

from flowpod_operator._runtime.loop import Reconciler

__all__ = ["build_registry", "build_settings"]

_JOBS = {"group": "batch", "version": "v1", "plural": "jobs"}
_PODS = {"group": "", "version": "v1", "plural": "pods"}
_DEPLOYMENTS = {"group": contract.GROUP, "version": contract.VERSION,
                "plural": contract.DEPLOYMENTS}
_OURS = {contract.LABEL_FLOW_RUN: kopf.PRESENT}


def build_registry(reconciler: Reconciler,
                   login: Callable[[], Awaitable[kopf.ConnectionInfo]]) -> kopf.OperatorRegistry:
    """A fresh registry (never kopf's global one) bound to `reconciler`."""
    registry = kopf.OperatorRegistry()
    intake = reconciler.intake

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return await login()

    @kopf.on.probe(id="reconciler", registry=registry)
    async def _probe(**_: Any) -> dict[str, Any]:
        return reconciler.stats()

    @kopf.on.event(**_DEPLOYMENTS, registry=registry)
    async def _deployment(event: dict[str, Any], **_: Any) -> None:
        intake.on_deployment(event.get("type"), event["object"])

    @kopf.on.event(**_JOBS, labels=_OURS, registry=registry)
    async def _job(event: dict[str, Any], **_: Any) -> None:
        intake.on_job(event.get("type"), event["object"])

    @kopf.on.event(**_PODS, labels=_OURS, registry=registry)
    async def _pod(event: dict[str, Any], **_: Any) -> None:
        intake.on_pod(event.get("type"), event["object"])

    # Handlers are coroutines: kopf runs plain functions in a thread pool, and the index
    # must only ever be touched from the event loop.
    return registry


class _NoEssence(kopf.DiffBaseStorage):
    """No diff base: only on.event handlers are registered, so nothing compares an object
    with its last handled state. kopf's default builds one for every event anyway, from a
    deep copy of the body; with 300 live runs that was most of kopf's CPU at a restart
    (tests/bench/operator_memory.py, "300 live runs")."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def build_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.diffbase_storage = _NoEssence()
    # The operator posts its own Events (one per transition); kopf's log-to-Event posting
    # would add an API call per log line.
    settings.posting.enabled = False
    settings.peering.standalone = True
    # Resources are discovered once at start-up (the CRDs are checked before); no need for
    # list/watch on CRDs and namespaces in the operator's RBAC.
    settings.scanning.disabled = True
    # An existence selector: the API server sends only the Jobs and Pods of flow runs.
    settings.watching.label_selectors["batch", "v1", "jobs"] = contract.LABEL_FLOW_RUN
    settings.watching.label_selectors["v1", "pods"] = contract.LABEL_FLOW_RUN
    # Listings in pages: one response with every Job of a large namespace would set the
    # peak RSS, which the process keeps.
    settings.watching.chunk_size = 500
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Per-object kopf workers hand events over at once; a short idle time keeps few alive.
    settings.queueing.idle_timeout = 2.0
    return settings
