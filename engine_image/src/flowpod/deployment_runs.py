"""run_deployment: start a run of a Deployment, in its own pod, and wait for its final state.

Role: `arun_deployment` (the async core) creates a child FlowRun of a flowpod Deployment
(spec.deploymentName) through the API server, waits for it with a watch on that one FlowRun
(reconnecting when the server ends the watch or its resourceVersion expires, never
polling) and returns its State; `.result()` on a Completed one is the child's result
(status.result.value, or the value a reference points to, read through flowpod.results).
`run_deployment` is the same call for sync code, and awaitable in an async flow (as
pause_flow_run is). `timeout=0` returns the child's current state at once; a timeout that
elapses returns its current, not final, state.

Called in a flow-run pod, the child belongs to the pod's FlowRun: an ownerReference (the
garbage collector deletes children with their parent; the operator cancels live children
of a cancelled parent) and the contract.LABEL_PARENT_FLOW_RUN label. Its name is
deterministic, `<parent>-<deployment>-<n>` for the n-th call for that Deployment in the
flow run (numbered when called, like task-run keys, and from zero again in a retried
attempt), or `<deployment>-<hash>` of a given idempotency_key, so a parent that runs again
finds the children it already created (409 AlreadyExists) and waits for them instead of
starting more. Anywhere else (a laptop with a kubeconfig, a plain pod) it runs without a
parent.

Transport: the in-pod engine's httpx client (flowpod.engine._kubeapi) with the pod's own
ServiceAccount token. On a laptop the kubeconfig is resolved by flowpod_kube.connecting,
imported on use (the `cli` extra), and turned into the same httpx client's settings: one
client code path, and no kubeconfig loader in a pod. Callers: user code via `flowpod`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Coroutine, Mapping

import anyio
import anyio.from_thread
import httpx

from flowpod import contract, flowruns, states
from flowpod._runtime.contexts import FlowRunContext, flow_run_var
from flowpod.engine._kubeapi import Connection, Conflict, FlowRunClient, KubeApiError

__all__ = ["run_deployment", "arun_deployment", "DeploymentRunState", "child_name"]

# One watch request lasts at most this long; the server may end it earlier, and the client
# then watches again from the last resourceVersion it saw.
WATCH_SECONDS = 240
_MAX_NAME = 253  # a FlowRun's name is a DNS subdomain
_RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(slots=True, eq=False)
class DeploymentRunState(states.State):
    """The state of a run started by run_deployment: `flow_run_name` names its FlowRun, and
    `.result()` reads a result the child kept in result storage, or says why none was kept."""

    flow_run_name: str = ""
    result_wire: Mapping[str, Any] | None = None

    def result(self, raise_on_failure: bool = True) -> Any:
        if self.type is states.StateType.COMPLETED and self.data is None and self.result_wire:
            self.data = _stored_value(self.flow_run_name, self.result_wire)
        return states.State.result(self, raise_on_failure)


def _stored_value(flow_run: str, wire: Mapping[str, Any]) -> Any:
    if wire.get("value") is not None:
        return wire["value"]
    reference = wire.get("reference")
    if reference:
        from flowpod.results import ResultStore

        store = ResultStore(reference)
        found, value = store.read(store.path_for())
        if not found:
            raise RuntimeError(f"FlowRun {flow_run}'s result is gone from {reference}")
        return value
    raise RuntimeError(f"FlowRun {flow_run} completed without keeping its result: "
                       f"{wire.get('notKept') or 'status.result is empty'}")


@dataclass(frozen=True)
class _Parent:
    name: str
    uid: str


@dataclass
class _Target:
    """Where the child goes: the client, and the parent FlowRun when called in one."""

    client: FlowRunClient
    parent: _Parent | None
    owns_client: bool


def child_name(deployment: str, *, parent: str | None, call: int | None = None,
               idempotency_key: str | None = None) -> str | None:
    """The child FlowRun's deterministic name, or None (a generated name) when neither a
    parent's call number nor an idempotency key makes one."""
    if idempotency_key is not None:
        name = f"{deployment}-{_digest(idempotency_key, 10)}"
    elif parent is not None and call is not None:
        name = f"{parent}-{deployment}-{call}"
    else:
        return None
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[:_MAX_NAME - 9].rstrip('-.')}-{_digest(name, 8)}"


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def flowrun_manifest(deployment: str, parameters: Mapping[str, Any], name: str | None,
                     parent: _Parent | None) -> dict[str, Any]:
    """The child FlowRun as created: labelled with its Deployment (and parent), owned by
    the parent FlowRun so the garbage collector deletes it with the parent."""
    labels = {contract.LABEL_DEPLOYMENT: contract.label_value(deployment)}
    meta: dict[str, Any] = {"name": name} if name else {"generateName": f"{deployment}-"}
    if parent is not None:
        labels[contract.LABEL_PARENT_FLOW_RUN] = contract.label_value(parent.name)
        meta["ownerReferences"] = [{"apiVersion": contract.API_VERSION,
                                    "kind": contract.KIND_FLOW_RUN, "name": parent.name,
                                    "uid": parent.uid}]
    meta["labels"] = labels
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": meta,
            "spec": {"deploymentName": deployment, "parameters": dict(parameters)}}


def _check_arguments(name: str, parameters: Mapping[str, Any] | None,
                     timeout: float | None) -> dict[str, Any]:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"run_deployment(name={name!r}): pass the flowpod Deployment's "
                         f"name (metadata.name, e.g. 'etl'), not 'flow/deployment'")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout={timeout!r} must be >= 0 seconds (or None: wait for good)")
    values = dict(parameters or {})
    try:
        json.dumps(values, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run_deployment(parameters=...) must be JSON data (they go into "
                         f"the FlowRun's spec.parameters): {exc}") from None
    return values


def arun_deployment(name: str, parameters: Mapping[str, Any] | None = None, *,
                    timeout: float | None = None, idempotency_key: str | None = None,
                    namespace: str | None = None, kubeconfig: str | None = None,
                    context: str | None = None) -> Coroutine[Any, Any, DeploymentRunState]:
    """Start a run of Deployment `name` with `parameters` (over the Deployment's defaults)
    and wait up to `timeout` seconds (None: until it is final) for it; await the result.

    The call is numbered when it is made (not when awaited), so children started together
    (`asyncio.gather`, an anyio task group) get the same names in every attempt.
    `namespace`, `kubeconfig` and `context` apply outside a flow-run pod only (in one, the
    child runs in the parent's namespace)."""
    values = _check_arguments(name, parameters, timeout)
    ctx = _root(flow_run_var.get())
    call = None
    if ctx is not None and idempotency_key is None:
        call = int(ctx.next_task_key(f"run_deployment/{name}").rsplit("-", 1)[1])
    return _run(ctx, name, values, timeout, call, idempotency_key,
                (namespace, kubeconfig, context))


def run_deployment(name: str, parameters: Mapping[str, Any] | None = None, *,
                   timeout: float | None = None, idempotency_key: str | None = None,
                   **where: Any) -> Any:
    """arun_deployment for sync code: blocks until the child is final (or `timeout`) and
    returns its DeploymentRunState; in an async flow it returns the awaitable instead."""
    coro = arun_deployment(name, parameters, timeout=timeout,
                           idempotency_key=idempotency_key, **where)
    ctx = flow_run_var.get()
    if ctx is not None and ctx.on_loop_thread():
        return coro
    if ctx is not None:  # a sync flow body: its worker thread drives the flow's loop
        return anyio.from_thread.run(lambda: coro, token=ctx.services.loop.token)
    if _loop_running():
        coro.close()
        raise RuntimeError("run_deployment() was called inside a running event loop: "
                           "use `await flowpod.arun_deployment(...)` there")
    return anyio.run(lambda: coro)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _root(ctx: FlowRunContext | None) -> FlowRunContext | None:
    # A subflow runs in its parent's pod; the FlowRun that owns children is the root's.
    while ctx is not None and ctx.parent is not None:
        ctx = ctx.parent
    return ctx


async def _run(ctx: FlowRunContext | None, deployment: str, parameters: dict[str, Any],
               timeout: float | None, call: int | None, key: str | None,
               where: tuple[str | None, str | None, str | None]) -> DeploymentRunState:
    target = await _target(ctx, *where)
    parent = target.parent
    name = child_name(deployment, parent=parent.name if parent else None, call=call,
                      idempotency_key=key)
    try:
        flowrun = await _create_or_attach(target, flowrun_manifest(
            deployment, parameters, name, parent), keyed=key is not None)
        if timeout != 0:
            flowrun = await _wait_final(target.client, flowrun, timeout)
        return state_of(flowrun)
    finally:
        if target.owns_client:
            await target.client.aclose()


async def _target(ctx: FlowRunContext | None, namespace: str | None,
                  kubeconfig: str | None, context: str | None) -> _Target:
    reporter = ctx.services.reporter if ctx is not None else None
    client = getattr(reporter, "client", None)
    if isinstance(client, FlowRunClient) and ctx is not None:  # the flow-run pod's FlowRun
        return _Target(client, _Parent(client.name, ctx.id), owns_client=False)
    connection, default_namespace = await _connection(kubeconfig, context)
    return _Target(FlowRunClient(connection, namespace or default_namespace, ""),
                   None, owns_client=True)


async def _connection(kubeconfig: str | None, context: str | None) -> tuple[Connection, str]:
    sa_namespace = contract.SERVICE_ACCOUNT_DIR / "namespace"
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and (
            sa_namespace.is_file()):
        return Connection.in_cluster(), sa_namespace.read_text().strip()
    try:
        from flowpod_kube import connecting
    except ImportError as exc:
        from flowpod.deploying import extra_missing

        raise extra_missing(exc, "run_deployment outside a flow-run pod") from exc
    resolved = await connecting.connect(connecting.Target(kubeconfig, context))
    base_url, token, verify = connecting.http_settings(resolved)
    return Connection(base_url, token, verify), resolved.namespace


async def _create_or_attach(target: _Target, manifest: dict[str, Any], *,
                            keyed: bool) -> dict[str, Any]:
    try:
        return await target.client.create_flowrun(manifest)
    except Conflict:
        name = manifest["metadata"]["name"]
    # Created by an earlier attempt of this run (or, with an idempotency key, by any
    # caller): wait for that one instead of starting another.
    existing = await target.client.get_flowrun(name)
    _check_attachable(existing, manifest, keyed=keyed)
    return existing


def _check_attachable(existing: Mapping[str, Any], manifest: Mapping[str, Any], *,
                      keyed: bool) -> None:
    name = manifest["metadata"]["name"]
    wanted = manifest["spec"]["deploymentName"]
    found = (existing.get("spec") or {}).get("deploymentName")
    if found != wanted:
        raise RuntimeError(f"FlowRun {name!r} already exists and runs Deployment {found!r}, "
                           f"not {wanted!r}; pass another idempotency_key")
    owners = {ref.get("uid") for ref in manifest["metadata"].get("ownerReferences") or ()}
    theirs = {ref.get("uid") for ref in (existing.get("metadata") or {}).get(
        "ownerReferences") or ()}
    if owners and not keyed and not owners & theirs:
        raise RuntimeError(f"FlowRun {name!r} already exists and belongs to another run; "
                           f"delete it, or pass idempotency_key= to name the child yourself")


def _is_final(flowrun: Mapping[str, Any]) -> bool:
    state = flowruns.current_state(flowrun)
    return state is not None and state.is_final()


async def _wait_final(client: FlowRunClient, flowrun: dict[str, Any],
                      timeout: float | None) -> dict[str, Any]:
    """The FlowRun once final, or as last seen when `timeout` seconds have passed."""
    seen = [flowrun]
    with anyio.move_on_after(timeout):
        await _watch_until_final(client, seen)
    return seen[-1]


async def _watch_until_final(client: FlowRunClient, seen: list[dict[str, Any]]) -> None:
    name = seen[-1]["metadata"]["name"]
    version = seen[-1]["metadata"]["resourceVersion"]
    failures = 0
    while not _is_final(seen[-1]):
        try:
            async with aclosing(client.watch_flowrun(name, version, WATCH_SECONDS)) as events:
                async for event in events:
                    failures = 0
                    version = _apply_event(event, seen, name) or version
                    if _is_final(seen[-1]):
                        return
        except _Expired:
            seen.append(await client.get_flowrun(name))  # watch again from now
            version = seen[-1]["metadata"]["resourceVersion"]
        except (httpx.TransportError, KubeApiError) as exc:
            if isinstance(exc, KubeApiError) and exc.status and exc.status < 500:
                raise
            await anyio.sleep(_RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS) - 1)])
            failures += 1
        # The server ended the watch (its timeout): watch again from the last version.


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): read the object again."""


def _apply_event(event: Mapping[str, Any], seen: list[dict[str, Any]],
                 name: str) -> str | None:
    """Record one watch event; return the resourceVersion to watch on from."""
    kind, obj = event.get("type"), event.get("object") or {}
    if kind in ("ADDED", "MODIFIED"):
        seen.append(dict(obj))
        return obj["metadata"]["resourceVersion"]
    if kind == "BOOKMARK":
        return (obj.get("metadata") or {}).get("resourceVersion")
    if kind == "DELETED":
        raise RuntimeError(f"FlowRun {name!r} was deleted before it reached a final state")
    if kind == "ERROR" and obj.get("code") == 410:
        raise _Expired()
    raise KubeApiError(int(obj.get("code") or 0),
                       f"watch of FlowRun {name!r}: {obj.get('message') or event}")


def state_of(flowrun: Mapping[str, Any]) -> DeploymentRunState:
    """The DeploymentRunState of a child FlowRun as read from the API."""
    name = flowrun["metadata"]["name"]
    state = flowruns.current_state(flowrun)
    if state is None:  # created, and the operator has not written its first state yet
        state = states.Scheduled("Created; waiting for the operator to schedule it")
    status = flowrun.get("status") or {}
    return DeploymentRunState(state.type, state.name, state.message, state.timestamp,
                              scheduled_time=state.scheduled_time,
                              pause_timeout=state.pause_timeout, flow_run_name=name,
                              result_wire=status.get("result"))
