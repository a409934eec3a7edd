"""Start-up: Deployments, Jobs, Pods and then FlowRuns are listed into the Index (in pages,
retried while the API refuses) before any worker decides, so the first decision after a
restart sees a run's Job and Pod (flowpod_operator._runtime.priming, Reconciler.start)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from flowpod import contract
from flowpod_operator._runtime import priming
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import ApiError, Page
from flowpod_operator._runtime.loop import Reconciler
from flowpod_operator._runtime.queueing import WorkQueue
from flowpod_operator._runtime.watching import FlowRunWatch


class PagedApi:
    """Answers list_pages from canned pages per path; the first `failures` calls fail."""

    def __init__(self, pages: dict[str, list[list[dict]]], failures: int = 0) -> None:
        self.pages = pages
        self.failures = failures
        self.calls: list[tuple[str, str | None]] = []

    async def list_pages(self, path, kind, *, selector=None, page=500):
        self.calls.append((path, selector))
        if self.failures:
            self.failures -= 1
            raise ApiError("LIST failed: the API server is busy", "try again")
        for number, items in enumerate(self.pages.get(path, [])):
            yield Page(items, str(100 + number))


def test_prime_lists_each_kind_into_the_index_and_retries_a_refusal(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1)
    job, pod = k8s.job(run), k8s.pod(run)
    other = k8s.deployment("other")
    api = PagedApi({contract.deployment_path("ns"): [[k8s.deployment()], [other]],
                    contract.flowrun_path("ns"): [[run], [k8s.flowrun("new")]],
                    "/apis/batch/v1/namespaces/ns/jobs": [[job]],
                    "/api/v1/namespaces/ns/pods": [[pod]]}, failures=1)
    index, queue = Index(), WorkQueue()
    intake = Intake(index, queue, EventRecorder(lambda e: None, clock=lambda: k8s.now))
    watch = FlowRunWatch(api, intake, "ns")
    asyncio.run(priming.prime(api, intake, ["ns"], [watch], first_delay=0.01))
    assert sorted(index.keys()) == [("ns", "new"), ("ns", "run")]
    assert watch.version == "101"  # the watch goes on from the listing's last page
    assert queue.stats()["queued"] == 2
    assert index.deployment("ns", "hello") is not None
    assert index.deployment("ns", "other") is not None
    assert index.children(("ns", "run")) == ([job], [pod])
    # Jobs and Pods with the selector kopf's watches use; listed again after the refusal.
    assert api.calls[0] == (contract.deployment_path("ns"), None)
    assert api.calls[1:] == [(contract.deployment_path("ns"), None),
                             ("/apis/batch/v1/namespaces/ns/jobs", contract.LABEL_FLOW_RUN),
                             ("/api/v1/namespaces/ns/pods", contract.LABEL_FLOW_RUN),
                             (contract.flowrun_path("ns"), None)]


def test_a_run_listed_again_unchanged_is_not_queued_again(k8s):
    index, queue = Index(), WorkQueue()
    intake = Intake(index, queue, EventRecorder(lambda e: None, clock=lambda: k8s.now))
    run = k8s.flowrun()
    intake.on_flowrun(None, run)

    async def drain() -> list:
        taken = []
        while queue.stats()["queued"]:
            taken.append(await queue.get())
            queue.done(taken[-1])
        return taken

    assert asyncio.run(drain()) == [("ns", "run")]
    intake.on_flowrun(None, k8s.flowrun())  # a relist after the start-up one
    assert queue.stats()["queued"] == 0
    newer = k8s.flowrun()
    newer["metadata"]["resourceVersion"] = "101"
    intake.on_flowrun(None, newer)
    assert queue.stats()["queued"] == 1


def test_all_namespaces_are_listed_cluster_wide():
    assert [path for path, _, _ in priming._paths(())] == [
        contract.deployment_path(None), "/apis/batch/v1/jobs", "/api/v1/pods"]


class Recording(Reconciler):
    def __init__(self) -> None:
        super().__init__(Index(), None, EventRecorder(lambda e: None, clock=_now),
                         clock=_now, workers=2)
        self.decided: list = []

    async def reconcile(self, key) -> None:
        self.decided.append(key)


def _now() -> datetime:
    return datetime(2026, 3, 1, tzinfo=timezone.utc)


def test_workers_decide_nothing_until_the_start_up_listing_is_done():
    async def scenario() -> tuple[list, list]:
        reconciler = Recording()
        listed = asyncio.Event()
        tasks = reconciler.start(listed.wait())
        reconciler.queue.add(("ns", "run"))
        await asyncio.sleep(0.05)
        before = list(reconciler.decided)
        listed.set()
        for _ in range(100):
            if reconciler.decided:
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return before, reconciler.decided

    assert asyncio.run(scenario()) == ([], [("ns", "run")])
