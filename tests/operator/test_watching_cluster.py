"""The operator's own FlowRun watch on the real API server: it follows creations and
deletions from its listing on, and a resourceVersion the server no longer keeps (410) makes
it list again (flowpod_operator._runtime.watching)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Awaitable, Callable

from flowpod import contract
from flowpod_kube.connecting import Target, api_client, connect
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.queueing import WorkQueue
from flowpod_operator._runtime.watching import FlowRunWatch

_SPEC = {"entrypoint": "flows/x.py:hello", "image": "flowpod/engine:dev"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


def _with_watch(cluster, namespace: str,
                scenario: Callable[[FlowRunWatch, Index], Awaitable[None]]) -> None:
    async def main() -> None:
        connection = await connect(Target(kubeconfig=cluster.kubeconfig))
        async with api_client(connection, user_agent="flowpod-watch-test") as client:
            index = Index()
            intake = Intake(index, WorkQueue(), EventRecorder(lambda e: None, clock=_now))
            await scenario(FlowRunWatch(KubeApi(client), intake, namespace,
                                        first_delay=0.1), index)
        # A TLS connection closed mid-stream (the cancelled watch) shuts down over a few
        # loop turns; a loop closed before that leaves its socket to the garbage collector.
        await asyncio.sleep(0.25)
    asyncio.run(main())


def test_the_watch_follows_creations_and_deletions_after_its_listing(cluster, flow_namespace, api):
    api.create_flowrun(flow_namespace, "before", **_SPEC)

    async def scenario(watch: FlowRunWatch, index: Index) -> None:
        await watch.relist()
        assert index.keys() == [(flow_namespace, "before")]
        following = asyncio.create_task(watch.follow())
        try:
            await asyncio.to_thread(api.create_flowrun, flow_namespace, "after", **_SPEC)
            await _until(lambda: index.flowrun((flow_namespace, "after")) is not None, "added")
            await asyncio.to_thread(api.request, "DELETE",
                                    contract.flowrun_path(flow_namespace, "before"))
            await _until(lambda: index.flowrun((flow_namespace, "before")) is None, "deleted")
            assert watch.relists == 1
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

    _with_watch(cluster, flow_namespace, scenario)


def test_a_version_the_server_no_longer_keeps_makes_the_watch_list_again(
        cluster, flow_namespace, api):
    api.create_flowrun(flow_namespace, "listed-again", **_SPEC)

    async def scenario(watch: FlowRunWatch, index: Index) -> None:
        watch.version = "1"  # long compacted away: the server answers 410 Gone
        following = asyncio.create_task(watch.follow())
        try:
            await _until(lambda: watch.relists == 1, "listed again after 410")
            assert index.flowrun((flow_namespace, "listed-again")) is not None
            assert watch.version is not None and int(watch.version) > 1
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

    _with_watch(cluster, flow_namespace, scenario)
