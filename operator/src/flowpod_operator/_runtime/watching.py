"""FlowRuns listed, then watched, by the operator itself: one listing at start-up, not two.

Role: keep the Index's FlowRuns current. `relist` lists a collection (a namespace, or
every namespace) page by page into the Intake and forgets the runs the listing no longer
shows; `follow` watches from the listing's resourceVersion on, with bookmarks, and lists
again only when the API server says that version is too old to go on from (410 Gone).
Deployments, Jobs and Pods stay with kopf's watches (flowpod_operator._runtime.wiring).

Why not kopf for FlowRuns: kopf keeps a memory object per watched object for the life of
the process, and after a restart it passes every listed object through a per-object
worker of its own after the operator's start-up listing (flowpod_operator._runtime.priming)
has already read it. With 10,000 final runs that was the largest part of the operator's
memory beyond its imports, and seconds of the event loop spent while the first new run
waited for its Job (figures in ARCHITECTURE.md, "Memory and restart").
Callers: flowpod_operator._runtime.priming (relist), flowpod_operator.running (follow).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import Any, Mapping

from flowpod import contract

from flowpod_operator._decisions.views import Meta
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import ApiError, KubeApi

__all__ = ["FlowRunWatch", "Expired"]

_log = logging.getLogger("flowpod_operator.watching")
_GONE = 410


class Expired(Exception):
    """The watch cannot go on from its resourceVersion: list again."""


class FlowRunWatch:
    """The FlowRuns of one namespace (or of all, with `namespace=None`)."""

    def __init__(self, api: KubeApi, intake: Intake, namespace: str | None, *,
                 timeout_seconds: int = 300, first_delay: float = 1.0,
                 max_delay: float = 30.0) -> None:
        self.api = api
        self.intake = intake
        self.namespace = namespace
        self.path = contract.flowrun_path(namespace)
        self.version: str | None = None  # where the watch goes on from
        self.timeout_seconds = timeout_seconds
        self.first_delay, self.max_delay = first_delay, max_delay
        self.relists = 0
        self.listed = 0  # FlowRuns the last listing showed

    async def relist(self) -> None:
        """List every FlowRun into the Intake (an unchanged one is passed over), then
        forget the runs known from before that the listing no longer shows."""
        listed: set[tuple[str, str]] = set()
        version = None
        async for page in self.api.list_pages(self.path, contract.KIND_FLOW_RUN):
            for body in page:
                meta = Meta(body)
                listed.add((meta.namespace or "", meta.name or ""))
                self.intake.on_flowrun(None, body)
            version = page.resource_version
        self._forget_unlisted(listed, version)
        self.version = version
        self.relists += 1
        self.listed = len(listed)

    def _forget_unlisted(self, listed: set[tuple[str, str]], version: str | None) -> None:
        """A run deleted while no watch was open sends no DELETED event. Only runs older
        than the listing are forgotten: one the operator itself created after the listing
        began (a scheduled run) is not in it, and is still there."""
        if not version or not version.isdigit():
            return
        for key, body in self.intake.index.flowrun_items():
            if key in listed or (self.namespace is not None and key[0] != self.namespace):
                continue
            known = str(Meta(body).resource_version or "")
            if known.isdigit() and int(known) <= int(version):
                self.intake.forget(key)

    async def follow(self) -> None:
        """Watch for ever from the last listing on (listing first if there was none);
        list again after a 410, and retry a broken watch with a capped backoff."""
        delay = self.first_delay
        while True:
            try:
                if self.version is None:
                    await self.relist()
                await self._watch_once()
                delay = self.first_delay
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, Expired) or getattr(exc, "status", None) == _GONE:
                    # An ERROR event or the answer to the request itself: list again now.
                    _log.info("FlowRun watch expired; listing again", extra={"path": self.path})
                    self.version, delay = None, self.first_delay
                    continue
                # A broken connection or another refusal: go on after a pause.
                _log.warning("FlowRun watch failed; retrying", extra={
                    "path": self.path, "error": str(exc), "retryIn": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)

    async def _watch_once(self) -> None:
        assert self.version is not None
        # Closed at once when an event ends the watch (a 410), so its connection goes too.
        async with aclosing(self.api.watch(self.path, contract.KIND_FLOW_RUN, self.version,
                                           timeout_seconds=self.timeout_seconds)) as events:
            async for event in events:
                self.apply(event)

    def apply(self, event: Mapping[str, Any]) -> None:
        """One watch event into the Intake; the watch's version moves on with it."""
        kind, body = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if body.get("code") == _GONE:
                raise Expired(body.get("message"))
            raise ApiError(f"WATCH failed: {body.get('message') or body}",
                           "the operator retries", status=body.get("code"))
        version = Meta(body).resource_version
        if kind != "BOOKMARK":
            self.intake.on_flowrun(kind, body)
        if version:
            self.version = version
