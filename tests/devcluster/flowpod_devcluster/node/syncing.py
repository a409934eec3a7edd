"""The node's view of its pods: list, then watch from that resourceVersion, re-listing when the
watch expires (410 Gone); plus a periodic re-list that reconciles anything a watch missed.

Used by kubelet.py, which receives every pod bound to this node through `on_pod` and learns of
removed ones through `on_deleted`. Only pods with spec.nodeName=<node> are listed: the Node
authorizer lets a node list/watch pods with exactly that field selector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio

from flowpod_devcluster.node import kubeapi

__all__ = ["PodSync"]

log = logging.getLogger(__name__)

_WATCH_SECONDS = 240
_RELIST_EVERY = 30.0


class PodSync:
    def __init__(self, api: kubeapi.Api, node_name: str, *, on_pod: Callable[[dict], None],
                 on_deleted: Callable[[dict], None], known: Callable[[], Iterable[dict]]) -> None:
        self._api, self._selector = api, f"spec.nodeName={node_name}"
        self._on_pod, self._on_deleted, self._known = on_pod, on_deleted, known

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_forever)
            tg.start_soon(self._relist_forever)

    async def _list(self) -> str:
        answer = await self._api.get("/api/v1/pods", fieldSelector=self._selector)
        for pod in answer.get("items") or []:
            self._on_pod(pod)
        await self._reconcile_absent({p["metadata"]["uid"] for p in answer.get("items") or []})
        return answer["metadata"]["resourceVersion"]

    async def _reconcile_absent(self, listed: set[str]) -> None:
        for pod in list(self._known()):
            if pod["metadata"]["uid"] in listed:
                continue
            # Absent from a list may just mean "created after the list's snapshot"; a GET
            # tells for sure whether this very pod (same uid) still exists.
            meta = pod["metadata"]
            try:
                fresh = await self._api.get(f"/api/v1/namespaces/{meta['namespace']}/pods/"
                                            f"{meta['name']}")
            except kubeapi.ApiError as exc:
                if exc.status != 404:
                    continue
                fresh = None
            if fresh is None or fresh["metadata"]["uid"] != meta["uid"]:
                self._on_deleted(pod)

    async def _watch_forever(self) -> None:
        while True:
            try:
                version = await self._list()
                await self._watch_from(version)
            except kubeapi.ApiError as exc:
                if exc.status != 410:
                    log.warning("pod watch: %s; re-listing", exc)
                    await anyio.sleep(1.0)

    async def _watch_from(self, version: str) -> None:
        """Watch until the API says the version is too old (raises ApiError 410)."""
        while True:
            events = self._api.watch("/api/v1/pods", fieldSelector=self._selector,
                                     resourceVersion=version, allowWatchBookmarks="true",
                                     timeoutSeconds=str(_WATCH_SECONDS))
            async for event in events:
                obj = event.get("object") or {}
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._on_pod(obj)
                elif event["type"] == "DELETED":
                    self._on_deleted(obj)

    async def _relist_forever(self) -> None:
        while True:
            await anyio.sleep(_RELIST_EVERY)
            try:
                await self._list()
            except kubeapi.ApiError as exc:
                log.warning("periodic pod re-list: %s", exc)
