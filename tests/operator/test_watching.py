"""The operator's own FlowRun watch: listed once, followed from the listing's version, listed
again only when the version expired, with the runs deleted meanwhile forgotten
(flowpod_operator._runtime.watching). The same watch on the real API server:
tests/operator/test_watching_cluster.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowpod import contract
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import ApiError, Page
from flowpod_operator._runtime.queueing import WorkQueue
from flowpod_operator._runtime.watching import Expired, FlowRunWatch


class ScriptedApi:
    """Answers listings with `listings` (one list of bodies per call, at version `rv`) and
    each watch with the next script: a list of events, or an exception to raise."""

    def __init__(self, listings: list[tuple[str, list[dict]]], watches: list[Any]) -> None:
        self.listings = listings
        self.watches = watches
        self.calls: list[tuple[str, str | None]] = []
        self.exhausted = asyncio.Event()

    async def list_pages(self, path, kind, *, selector=None, page=500):
        self.calls.append(("list", None))
        version, bodies = self.listings.pop(0)
        yield Page(bodies[:1], version)
        yield Page(bodies[1:], version)

    async def watch(self, path, kind, resource_version, *, timeout_seconds=300):
        self.calls.append(("watch", resource_version))
        if not self.watches:
            self.exhausted.set()
            await asyncio.Event().wait()  # parked until the test cancels the watch
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


def _version(body: dict, rv: str) -> dict:
    body["metadata"]["resourceVersion"] = rv
    return body


def _intake(k8s) -> tuple[Index, Intake]:
    index = Index()
    return index, Intake(index, WorkQueue(), EventRecorder(lambda e: None, clock=lambda: k8s.now))


def _follow(watch: FlowRunWatch, api: ScriptedApi) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(watch.follow())
        await asyncio.wait_for(api.exhausted.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(scenario())


def test_the_watch_goes_on_from_the_listing_and_each_event_moves_its_version(k8s):
    index, intake = _intake(k8s)
    a, b = _version(k8s.flowrun("a"), "10"), _version(k8s.flowrun("b"), "11")
    changed = _version(k8s.flowrun("a", state=k8s.state("RUNNING"), attempt=1), "12")
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
    api = ScriptedApi([("11", [a, b])], [
        [{"type": "MODIFIED", "object": changed}, {"type": "DELETED", "object": b}, bookmark],
        []])
    watch = FlowRunWatch(api, intake, "ns", first_delay=0.01)
    _follow(watch, api)
    # The server ends a watch after its timeout: the next goes on from the bookmark.
    assert api.calls == [("list", None), ("watch", "11"), ("watch", "15"), ("watch", "15")]
    assert index.keys() == [("ns", "a")]
    assert index.flowrun(("ns", "a"))["status"]["state"]["type"] == "RUNNING"


def test_an_expired_version_lists_again_and_forgets_the_runs_deleted_meanwhile(k8s):
    index, intake = _intake(k8s)
    kept, deleted = _version(k8s.flowrun("kept"), "10"), _version(k8s.flowrun("gone"), "11")
    # Created by the operator itself after the second listing's snapshot: not in it, kept.
    intake.remember(_version(k8s.flowrun("scheduled"), "30"))
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                           "message": "too old resource version: 11 (20)"}}
    api = ScriptedApi([("11", [kept, deleted]), ("20", [kept, k8s.flowrun("late")])],
                      [[expired]])
    watch = FlowRunWatch(api, intake, "ns", first_delay=0.01)
    _follow(watch, api)
    assert api.calls == [("list", None), ("watch", "11"), ("list", None), ("watch", "20")]
    assert sorted(index.keys()) == [("ns", "kept"), ("ns", "late"), ("ns", "scheduled")]
    assert watch.relists == 2


def test_a_broken_watch_is_retried_from_where_it_was(k8s):
    index, intake = _intake(k8s)
    run = _version(k8s.flowrun("a"), "10")
    api = ScriptedApi([("10", [run])], [ConnectionResetError("reset by peer"),
                                        ApiError("WATCH failed: busy", "retry", status=503)])
    watch = FlowRunWatch(api, intake, "ns", first_delay=0.01)
    _follow(watch, api)
    assert api.calls == [("list", None), ("watch", "10"), ("watch", "10"), ("watch", "10")]


def test_a_gone_answer_to_the_watch_request_itself_lists_again(k8s):
    index, intake = _intake(k8s)
    run = _version(k8s.flowrun("a"), "10")
    api = ScriptedApi([("10", [run]), ("40", [run])],
                      [ApiError("WATCH failed: gone", "list again", status=410)])
    watch = FlowRunWatch(api, intake, "ns", first_delay=0.01)
    _follow(watch, api)
    assert api.calls == [("list", None), ("watch", "10"), ("list", None), ("watch", "40")]


def test_an_error_event_other_than_gone_is_a_failure_and_retried(k8s):
    _, intake = _intake(k8s)
    watch = FlowRunWatch(ScriptedApi([], []), intake, "ns")
    with pytest.raises(Expired):
        watch.apply({"type": "ERROR", "object": {"code": 410, "message": "too old"}})
    with pytest.raises(ApiError) as refused:
        watch.apply({"type": "ERROR", "object": {"code": 500, "message": "etcd down"}})
    assert refused.value.status == 500 and "etcd down" in str(refused.value)


def test_a_cluster_wide_relist_forgets_in_every_namespace_and_a_namespaced_one_in_its_own(k8s):
    index, intake = _intake(k8s)
    for ns in ("a", "b"):
        intake.remember(_version(k8s.flowrun("run", ns), "5"))
    namespaced = FlowRunWatch(ScriptedApi([("9", [])], []), intake, "a")
    asyncio.run(namespaced.relist())
    assert index.keys() == [("b", "run")]
    everywhere = FlowRunWatch(ScriptedApi([("9", [])], []), intake, None)
    asyncio.run(everywhere.relist())
    assert index.keys() == []
    assert everywhere.path == contract.flowrun_path(None)
