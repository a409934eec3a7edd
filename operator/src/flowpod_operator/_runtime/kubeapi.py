"""The operator's API client: every call it makes besides kopf's watches.

Role: the requests behind the actuator's actions (create a Job, delete a Job or Pod, patch
a FlowRun's status with a resourceVersion precondition), the reads a decision may need
fresh (a FlowRun, a Deployment, a run's Jobs and Pods), Event posting, the start-up
check that the CRDs are served, and the paged listings and the watch behind
flowpod_operator._runtime.priming and .watching. Responses are read as plain JSON
(`_preload_content=False`), skipping kubernetes-asyncio's model deserialisation, which costs more than the request
itself at a thousand runs; answers the caller acts on (404, 409, 422) come back as a
`Reply`, not an exception. Callers: flowpod_operator._runtime.actuator and .loop, .eventing
(post_event through running), running (check_crds), priming and watching (listing, watch).

The RBAC these calls need is flowpod_operator._runtime.permissions (RBAC_RULES, re-exported
here for the chart's tests and the harness).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Mapping

from kubernetes_asyncio import client

from flowpod import contract, flowruns

from flowpod_kube import errors
from flowpod_kube.errors import ApiError, MissingCrdError
from flowpod_operator._runtime.permissions import LEADER_ELECTION_RULES, RBAC_RULES

__all__ = ["KubeApi", "Reply", "Page", "ApiError", "MissingCrdError", "RBAC_RULES",
           "LEADER_ELECTION_RULES"]

_log = logging.getLogger("flowpod_operator.api")

_JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """An API response: HTTP status and the decoded JSON body (or {} if none)."""

    status: int
    body: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.body.get("reason") or self.status)


class KubeApi:
    """Thin async calls on one kubernetes-asyncio ApiClient (shared connection pool)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        # Told the verb of every request that failed (flowpod_operator._runtime.metrics):
        # an exception, or an answer other than success, 404 (gone) and 409 (exists/stale),
        # which the callers treat as news rather than failure.
        self.on_error: Callable[[str], None] = lambda verb: None

    def failure(self, verb: str, ref: errors.Ref, reply: Reply) -> ApiError:
        """An answer the operator cannot act on (its caller retries later), worded by the
        shared vocabulary (flowpod_kube.errors) and prefixed with the call."""
        status = reply.body if reply.body.get("kind") == "Status" else None
        error = errors.api_error(reply.status, status, ref,
                                 server=self._client.configuration.host,
                                 source="the operator's credentials", text=reply.message)
        return ApiError(f"{verb} failed: {error.problem}", error.fix, status=reply.status)

    async def _call(self, method: str, path: str, *, body: Any = None,
                    query: Mapping[str, Any] | None = None,
                    content_type: str = _JSON, timeout: float = 30.0) -> Reply:
        try:
            response = await self._client.call_api(
                path, method, query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": _JSON},
                body=body, auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout)
            async with response:
                raw = await response.read()
        except Exception:
            self.on_error(method)
            raise
        if response.status >= 400 and response.status not in (404, 409):
            self.on_error(method)
        return Reply(response.status, _decoded(raw))

    # --- FlowRuns and Deployments ----------------------------------------------------------
    async def get_flowrun(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        reply = await self._call("GET", contract.flowrun_path(namespace, name))
        if reply.status == 404:
            return None
        if not reply.ok:
            raise self.failure("GET", errors.Ref("FlowRun", name, namespace), reply)
        return reply.body

    async def patch_status(self, namespace: str, name: str, resource_version: str | None,
                           status_patch: Mapping[str, Any]) -> Reply:
        """PATCH .../status as a merge patch guarded by resourceVersion (409 if stale)."""
        return await self._call(
            "PATCH", contract.flowrun_path(namespace, name, "status"),
            body=flowruns.patch_body(resource_version, status_patch),
            content_type=contract.MERGE_PATCH)

    async def patch_labels(self, namespace: str, name: str,
                           labels: Mapping[str, str]) -> Reply:
        """Merge these labels into a FlowRun's metadata (no precondition: they are only
        added, and nothing else of the object is touched)."""
        return await self._call("PATCH", contract.flowrun_path(namespace, name),
                                body={"metadata": {"labels": dict(labels)}},
                                content_type=contract.MERGE_PATCH)

    async def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> Reply:
        """POST a scheduled FlowRun; 201, 409 (AlreadyExists) and 4xx are returned."""
        return await self._call("POST", contract.resource_path(contract.FLOWRUNS, namespace),
                                body=manifest)

    async def cancel_flowrun(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Set spec.cancel of a run (one a newer scheduled run replaces, or a child of a
        cancelled parent); a run already gone or ended is left as it is. The run as it is
        now, or None if it is gone or ended."""
        reply = await self._call("PATCH", contract.flowrun_path(namespace, name),
                                 body={"spec": {"cancel": True}},
                                 content_type=contract.MERGE_PATCH)
        if not reply.ok and reply.status not in (404, 422):
            raise self.failure("PATCH", errors.Ref("FlowRun", name, namespace), reply)
        return reply.body if reply.ok else None

    async def patch_deployment_status(self, namespace: str, name: str,
                                      status: Mapping[str, Any]) -> Reply:
        """Merge-patch a Deployment's status (only the operator writes it: no precondition)."""
        return await self._call("PATCH", contract.deployment_path(namespace, name, "status"),
                                body={"status": dict(status)},
                                content_type=contract.MERGE_PATCH)

    async def get_deployment(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        reply = await self._call("GET", contract.deployment_path(namespace, name))
        if reply.status == 404:
            return None
        if not reply.ok:
            raise self.failure("GET", errors.Ref("Deployment", name, namespace), reply)
        return reply.body

    # --- Jobs and Pods ---------------------------------------------------------------------
    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> Reply:
        """POST the Job; 201, 409 (AlreadyExists) and 4xx are returned, not raised."""
        return await self._call("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                                body=manifest)

    async def get_job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        reply = await self._call("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        if reply.status == 404:
            return None
        if not reply.ok:
            raise self.failure("GET", errors.Ref("Job", name, namespace), reply)
        return reply.body

    async def delete_flowrun(self, namespace: str, name: str, uid: str | None) -> Reply:
        """Delete a FlowRun (its Jobs and pods follow in the background); the uid
        precondition spares a new run of the same name. 404 and 409 are answers."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                   "propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        reply = await self._call("DELETE", contract.flowrun_path(namespace, name), body=options)
        if not reply.ok and reply.status not in (404, 409):
            raise self.failure("DELETE", errors.Ref("FlowRun", name, namespace), reply)
        return reply

    async def delete_job(self, namespace: str, name: str) -> Reply:
        reply = await self._call(
            "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            body={"kind": "DeleteOptions", "apiVersion": "v1",
                  "propagationPolicy": "Background"})
        if not reply.ok and reply.status != 404:
            raise self.failure("DELETE", errors.Ref("Job", name, namespace), reply)
        return reply

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> Reply:
        reply = await self._call(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
            body={"kind": "DeleteOptions", "apiVersion": "v1",
                  "gracePeriodSeconds": max(int(grace_seconds), 0)})
        if not reply.ok and reply.status != 404:
            raise self.failure("DELETE", errors.Ref("Pod", name, namespace), reply)
        return reply

    async def pod_log_tail(self, namespace: str, name: str) -> list[str]:
        """The last lines of a pod's flow container log, for status.logTail; [] when it
        cannot be read (a final state is never held back for want of its log)."""
        query = {"container": contract.CONTAINER_NAME, "tailLines": contract.MAX_LOG_TAIL_LINES,
                 # Bounds the transfer; contract.log_tail then keeps the newest lines.
                 "limitBytes": contract.MAX_LOG_TAIL_LINES * contract.MAX_LOG_LINE_LENGTH}
        try:
            response = await self._client.call_api(
                f"/api/v1/namespaces/{namespace}/pods/{name}/log", "GET",
                query_params=list(query.items()), header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=10.0)
            async with response:
                raw = await response.read()
        except Exception as exc:  # any transport failure: the verdict goes out without it
            _log.warning("could not read a pod's log", extra={
                "namespace": namespace, "pod": name, "error": str(exc)})
            return []
        if response.status != 200:
            _log.warning("could not read a pod's log", extra={
                "namespace": namespace, "pod": name, "status": response.status,
                "error": raw.decode(errors="replace")[:300]})
            return []
        return raw.decode(errors="replace").splitlines()

    async def list_owned_flowruns(self, namespace: str, parent: str
                                  ) -> list[Mapping[str, Any]]:
        """The FlowRuns labelled as started by run `parent` (flowpod.run_deployment), listed
        live: with shards, they may belong to another shard, whose runs no watch here shows."""
        selector = f"{contract.LABEL_PARENT_FLOW_RUN}={contract.label_value(parent)}"
        reply = await self._call("GET", contract.flowrun_path(namespace),
                                 query={"labelSelector": selector})
        if not reply.ok:
            raise self.failure(f"LIST ({selector})", errors.Ref("FlowRun", None, namespace),
                               reply)
        return list(reply.body.get("items") or [])

    async def list_children(self, namespace: str, selector: str
                            ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """A run's Jobs and Pods, listed live (for decisions where absence matters)."""
        query = {"labelSelector": selector}
        jobs = await self._call("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                                query=query)
        pods = await self._call("GET", f"/api/v1/namespaces/{namespace}/pods", query=query)
        for kind, reply in (("Job", jobs), ("Pod", pods)):
            if not reply.ok:
                raise self.failure(f"LIST ({selector})", errors.Ref(kind, None, namespace),
                                   reply)
        return list(jobs.body.get("items") or []), list(pods.body.get("items") or [])

    async def list_pages(self, path: str, kind: str, *, selector: str | None = None,
                         page: int = 500) -> AsyncIterator["Page"]:
        """Every object of a collection, a page at a time (one response for all of them
        would be parsed at once, and the peak stays in the process). The next page is
        asked for before this one is handed over, so the API server encodes it while the
        caller digests this one. Every page carries the listing's resourceVersion, from
        which a watch goes on (`watch`)."""
        query: dict[str, Any] = {"limit": page}
        if selector:
            query["labelSelector"] = selector
        reply = await self._call("GET", path, query=query, timeout=60.0)
        while True:
            if not reply.ok:
                raise self.failure("LIST", errors.Ref(kind, None, None), reply)
            meta = reply.body.get("metadata") or {}
            token = meta.get("continue")
            following = asyncio.ensure_future(self._call(
                "GET", path, query={**query, "continue": token}, timeout=60.0)
            ) if token else None
            try:
                yield Page(reply.body.get("items") or [], meta.get("resourceVersion"))
            except BaseException:  # the caller stopped reading: the next page is not wanted
                if following is not None:
                    following.cancel()
                raise
            if following is None:
                return
            reply = await following

    async def watch(self, path: str, kind: str, resource_version: str, *,
                    timeout_seconds: int = 300) -> AsyncIterator[Mapping[str, Any]]:
        """The watch events of a collection after `resource_version`, bookmarks included,
        as decoded dicts, until the server ends the watch (after `timeout_seconds`). A
        refusal raises ApiError with its status (410: the version is too old to go on from,
        list again)."""
        query = {"watch": "true", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds}
        try:
            response = await self._client.call_api(
                path, "GET", query_params=list(query.items()), header_params={"Accept": _JSON},
                auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout_seconds + 30)
        except Exception:
            self.on_error("WATCH")
            raise
        async with response:
            if response.status >= 400:
                self.on_error("WATCH")
                raw = await response.read()
                reply = Reply(response.status, _decoded(raw))
                raise self.failure("WATCH", errors.Ref(kind, None, None), reply)
            async with aclosing(_lines(response.content)) as lines:
                async for line in lines:
                    yield json.loads(line)

    # --- Events and discovery --------------------------------------------------------------
    async def post_event(self, event: Mapping[str, Any]) -> None:
        namespace = event["metadata"]["namespace"]
        reply = await self._call("POST", f"/api/v1/namespaces/{namespace}/events", body=event)
        if not reply.ok and reply.status != 404:  # 404: the namespace is being deleted
            _log.warning("could not post an Event", extra={
                "namespace": namespace, "reason": event.get("reason"), "status": reply.status,
                "error": reply.message})

    async def list_events(self, namespace: str, kind: str, name: str) -> Reply:
        """The Events about one object (e.g. the Job controller's FailedCreate on a Job),
        as a Reply: the caller decides what a refusal means."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        return await self._call("GET", f"/api/v1/namespaces/{namespace}/events",
                                query={"fieldSelector": selector})

    async def check_crds(self, *, wait: float = 60.0, interval: float = 1.0) -> None:
        """Wait (up to `wait` s) until the FlowRun and Deployment CRDs are served, then
        return; fail clearly if they never are. kopf discovers resources once, at start,
        so starting it before the CRDs (e.g. in the same `helm install`) would never
        watch them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            reply = await self._call("GET", f"/apis/{contract.GROUP}/{contract.VERSION}")
            served = {r.get("name") for r in reply.body.get("resources") or []} \
                if reply.ok else set()
            missing = {contract.FLOWRUNS, contract.DEPLOYMENTS} - served
            if not missing:
                return
            if loop.time() >= deadline:
                raise errors.crds_not_served(sorted(missing))
            _log.warning("waiting for the flowpod CRDs", extra={"missing": sorted(missing)})
            await asyncio.sleep(interval)


class Page(list):  # type: ignore[type-arg]
    """One page of a listing: its objects, and the listing's resourceVersion."""

    def __init__(self, items: list[Mapping[str, Any]], resource_version: str | None) -> None:
        super().__init__(items)
        self.resource_version = resource_version


def _decoded(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"message": raw.decode(errors="replace")[:500]}
    return data if isinstance(data, dict) else {}


async def _lines(stream: Any) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed body, whatever their length (aiohttp's readline
    refuses a line above 128 KiB; a FlowRun with a long record can be one)."""
    rest = b""
    async for chunk in stream.iter_any():
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest
