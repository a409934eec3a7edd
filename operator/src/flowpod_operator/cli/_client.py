"""The CLI's session with the API server, on kubernetes-asyncio (the operator's client).

Role: the one async core every `flowpod` command talks through: FlowRuns and Deployments
through CustomObjectsApi (get, list, create, merge patch, status patch, delete, server-side
apply; every body is checked to be strict JSON first, ._wirejson), pods by label, a FlowRun's
changes through kubernetes_asyncio.watch.Watch, and a pod's log through
CoreV1Api.read_namespaced_pod_log (streamed with `follow`). The Connection comes from
flowpod_kube.connecting; every failure becomes an error of the shared vocabulary
(flowpod_kube.errors) that names the object and the fix (a missing FlowRun,
missing CRDs, RBAC, an unreachable cluster). Callers: flowpod_operator.cli._actions and
._watching. Tests point it at the shared fake API server (tests/fakeapi.py).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from kubernetes_asyncio import client, watch

from flowpod import contract
from flowpod_kube import errors
from flowpod_kube.apply import APPLY_PATCH, FIELD_MANAGER
from flowpod_kube.calls import guard
from flowpod_kube.connecting import Connection, api_client
from flowpod_kube.errors import KubeError, Ref
from flowpod_operator.cli import _wirejson

__all__ = ["Kube", "flowrun_ref", "deployment_ref", "pod_ref", "APPLY_PATCH", "FIELD_MANAGER"]

# Connect within 30 s; no read timeout: watches and `logs -f` stay silent for minutes.
_TIMEOUT = (30, None)
_GROUP, _VERSION = contract.GROUP, contract.VERSION


def flowrun_ref(namespace: str | None, name: str | None = None) -> Ref:
    where = f"-n {namespace}" if namespace else "-A"
    return Ref("FlowRun", name, namespace, f"list the runs with `flowpod get {where}`")


def deployment_ref(namespace: str, name: str | None = None) -> Ref:
    return Ref("Deployment", name, namespace,
               f"create it with `flowpod deploy FILE:FLOW --name {name or 'NAME'} --image IMAGE "
               f"-n {namespace}` or list them with `kubectl get fdeploy -n {namespace}`")


def pod_ref(namespace: str, name: str) -> Ref:
    return Ref("Pod", name, namespace, "the run's pod may have been deleted already")


class Kube:
    """An async session with one API server; use as `async with Kube(connection) as kube:`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.namespace = connection.namespace
        self._api = api_client(connection, user_agent=FIELD_MANAGER)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    async def __aenter__(self) -> "Kube":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._api.close()

    # --- FlowRuns and Deployments -----------------------------------------------------------
    async def get_flowrun(self, ns: str, name: str) -> dict[str, Any]:
        return await self._call(flowrun_ref(ns, name), self._custom.get_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, name)

    async def list_flowruns(self, ns: str | None, *,
                            label_selector: str | None = None) -> dict[str, Any]:
        """The runs of `ns`, or of every namespace when `ns` is None."""
        more = {"label_selector": label_selector} if label_selector else {}
        if ns is None:
            return await self._call(flowrun_ref(None), self._custom.list_cluster_custom_object,
                                    _GROUP, _VERSION, contract.FLOWRUNS, **more)
        return await self._call(flowrun_ref(ns), self._custom.list_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, **more)

    async def create_flowrun(self, ns: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"].get("name")
        _wirejson.check(body, f"FlowRun '{name}'")
        return await self._call(flowrun_ref(ns, name),
                                self._custom.create_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, body)

    async def patch_flowrun(self, ns: str, name: str,
                            patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the FlowRun (e.g. spec.cancel)."""
        _wirejson.check(patch, f"the patch of FlowRun '{name}'")
        return await self._call(flowrun_ref(ns, name),
                                self._custom.patch_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, name, patch,
                                _content_type=contract.MERGE_PATCH)

    async def patch_flowrun_json(self, ns: str, name: str,
                                 operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON Patch (RFC 6902) of the FlowRun: replaces a value whole, nulls included
        (e.g. spec.resume, whose input a merge patch would merge into the previous one)."""
        _wirejson.check(operations, f"the patch of FlowRun '{name}'")
        return await self._call(flowrun_ref(ns, name),
                                self._custom.patch_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, name, operations,
                                _content_type=contract.JSON_PATCH)

    async def patch_flowrun_status(self, ns: str, name: str,
                                   body: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the status subresource (flowruns.patch_body: with a
        resourceVersion precondition, so a concurrent write is a 409, not overwritten)."""
        _wirejson.check(body, f"the status patch of FlowRun '{name}'")
        return await self._call(flowrun_ref(ns, name),
                                self._custom.patch_namespaced_custom_object_status,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, name, body,
                                _content_type=contract.MERGE_PATCH)

    async def delete_flowrun(self, ns: str, name: str) -> dict[str, Any]:
        return await self._call(flowrun_ref(ns, name),
                                self._custom.delete_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.FLOWRUNS, name)

    async def list_deployments(self, ns: str | None) -> dict[str, Any]:
        """The Deployments of `ns`, or of every namespace when `ns` is None."""
        if ns is None:
            return await self._call(Ref("Deployment", None, None),
                                    self._custom.list_cluster_custom_object,
                                    _GROUP, _VERSION, contract.DEPLOYMENTS)
        return await self._call(deployment_ref(ns), self._custom.list_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.DEPLOYMENTS)

    async def list_pods(self, ns: str, label_selector: str) -> list[dict[str, Any]]:
        """Pods matching `label_selector`, as plain API dicts."""
        response = await self._call(Ref("Pod", None, ns, "check the selector"),
                                    self._core.list_namespaced_pod, ns,
                                    label_selector=label_selector, _preload_content=False)
        try:
            return list((await response.json()).get("items") or [])
        finally:
            response.release()

    async def get_deployment(self, ns: str, name: str) -> dict[str, Any]:
        return await self._call(deployment_ref(ns, name),
                                self._custom.get_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.DEPLOYMENTS, name)

    async def patch_deployment(self, ns: str, name: str,
                               patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the Deployment (e.g. spec.paused). Its fields belong to an
        update, not to `flowpod deploy`'s apply, so a later deploy leaves them as they are."""
        _wirejson.check(patch, f"the patch of Deployment '{name}'")
        return await self._call(deployment_ref(ns, name),
                                self._custom.patch_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.DEPLOYMENTS, name, patch,
                                _content_type=contract.MERGE_PATCH)

    async def apply_deployment(self, ns: str, name: str,
                               body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: create or update in one call, owning the fields we set."""
        _wirejson.check(body, f"Deployment '{name}'")
        return await self._call(deployment_ref(ns, name),
                                self._custom.patch_namespaced_custom_object,
                                _GROUP, _VERSION, ns, contract.DEPLOYMENTS, name, body,
                                field_manager=FIELD_MANAGER, force=True,
                                _content_type=APPLY_PATCH)

    # --- streams ----------------------------------------------------------------------------
    async def watch_flowrun(self, ns: str, name: str, *, resource_version: str | None,
                            timeout_seconds: int = 300
                            ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) watch events of one FlowRun from `resource_version` on, until the
        server ends the watch. A 410 Gone (too old a version) is raised as KubeError."""
        ref = flowrun_ref(ns, name)
        async with watch.Watch() as stream:
            events = stream.stream(
                self._custom.list_namespaced_custom_object, _GROUP, _VERSION, ns,
                contract.FLOWRUNS, field_selector=f"metadata.name={name}",
                resource_version=resource_version, allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds, _request_timeout=_TIMEOUT)
            while True:
                try:
                    event = await self._guard(ref, events.__anext__())
                except StopAsyncIteration:
                    return
                if not isinstance(event, dict):  # not JSON: an error page, not an event
                    status = stream.resp.status if stream.resp is not None else 500
                    raise self._error(status, None, ref, str(event))
                yield event["type"], event["raw_object"]

    async def pod_log_lines(self, ns: str, pod: str, *, follow: bool) -> AsyncIterator[str]:
        """The flow container's log, line by line as it arrives (until it ends, with
        `follow`)."""
        ref = pod_ref(ns, pod)
        # `follow` only when asked: without it the server sends the log so far and ends.
        more = {"follow": True} if follow else {}
        response = await self._call(ref, self._core.read_namespaced_pod_log, pod, ns,
                                    container=contract.CONTAINER_NAME, _preload_content=False, **more)
        try:
            if response.status >= 400:
                raw = await response.read()
                raise self._error(response.status, errors.status_body(raw), ref,
                                  raw.decode(errors="replace"))
            while True:
                line = await self._guard(ref, response.content.readline())
                if not line:
                    return
                yield line.decode(errors="replace").rstrip("\r\n")
        finally:
            response.release()

    # --- errors -----------------------------------------------------------------------------
    async def _call(self, ref: Ref, fn: Callable[..., Awaitable[Any]], *args: Any,
                    **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", _TIMEOUT)
        return await self._guard(ref, fn(*args, **kwargs))

    async def _guard(self, ref: Ref, pending: Awaitable[Any]) -> Any:
        """Await `pending`, turning every way it can fail into the shared vocabulary."""
        return await guard(self.connection, ref, pending)

    def _error(self, code: int, status: Mapping[str, Any] | None, ref: Ref,
               text: str) -> KubeError:
        return errors.api_error(code, status, ref, server=self.connection.server,
                                source=self.connection.source, text=text)
