"""The Index and queue with many runs: look-ups that do not scan every run the operator
knows, a history ranking reused until something it ranks by changes, and final runs of a
start-up listing queued behind the runs that wait for a Job."""

from __future__ import annotations

import asyncio

from flowpod import contract
from flowpod_operator._decisions import cleanup
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.history import History
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime import queueing
from flowpod_operator._runtime.queueing import WorkQueue


def _final(k8s, name, ended, kind="FAILED", dep="hello", rv="100"):
    body = k8s.flowrun(name, deployment=dep, state=k8s.state(kind, offset=ended), attempt=1,
                       endTime=k8s.ts(ended))
    body["metadata"]["resourceVersion"] = rv
    return body


class CountingIndex(Index):
    """Counts how often the history limits rank a group (each ranking sorts it)."""

    rankings = 0

    def history_group(self, namespace, deployment):
        self.rankings += 1
        return super().history_group(namespace, deployment)


def test_the_history_ranking_is_reused_until_the_group_or_the_limits_change(k8s):
    index = CountingIndex()
    dep = k8s.deployment()
    dep["spec"]["failedRunsHistoryLimit"] = 2
    index.put_deployment(dep)
    for n in range(1, 6):
        index.put_flowrun(_final(k8s, f"r{n}", -n))
    history = History(index)
    notes = {key: history.note(index.flowrun(key)) for key in index.keys()}
    assert [key for key, why in sorted(notes.items()) if why] == [("ns", "r3"), ("ns", "r4"),
                                                                  ("ns", "r5")]
    assert index.rankings == 1  # five notes, one ranking

    index.put_flowrun(_final(k8s, "r1", -1, rv="101"))  # a newer body, same facts
    history.note(index.flowrun(("ns", "r1")))
    assert index.rankings == 1

    index.put_flowrun(_final(k8s, "r0", 0))  # a newer run pushes r2 out
    assert history.note(index.flowrun(("ns", "r2"))) == \
        "beyond the Deployment's failedRunsHistoryLimit of 2"
    assert index.rankings == 2

    dep["spec"]["failedRunsHistoryLimit"] = 10  # raised: nobody is beyond it
    index.put_deployment(dep)
    assert history.victims("ns", "hello") == []
    assert index.rankings == 3

    index.remove_flowrun(("ns", "r0"))
    dep["spec"]["failedRunsHistoryLimit"] = 0
    index.put_deployment(dep)
    assert sorted(history.victims("ns", "hello")) == [("ns", f"r{n}") for n in range(1, 6)]


def test_a_run_that_moves_to_another_deployment_label_leaves_the_old_group(k8s):
    index = Index()
    index.put_flowrun(_final(k8s, "r1", -1))
    moved = _final(k8s, "r1", -1, rv="101")
    moved["metadata"]["labels"] = {contract.LABEL_DEPLOYMENT: "other"}
    index.put_flowrun(moved)
    history = History(index)
    assert index.history_group("ns", "hello") == (2, [])
    assert history.victims("ns", "other") == []
    assert index.history_group("ns", "other") == (1, [cleanup.ranked(moved)])


def test_owned_runs_are_found_by_their_owner_without_a_scan(k8s):
    index = Index()
    parent = k8s.flowrun("parent", cancel=True, state=k8s.state("CANCELLING"), attempt=1)
    index.put_flowrun(parent)
    for name, uid in (("mine", "uid-parent"), ("other", "uid-someone")):
        child = k8s.flowrun(name, state=k8s.state("RUNNING"), attempt=1)
        child["metadata"]["ownerReferences"] = [{"kind": contract.KIND_FLOW_RUN, "uid": uid,
                                                 "name": "x", "controller": True}]
        index.put_flowrun(child)
    assert [b["metadata"]["name"] for b in index.observe(("ns", "parent")).owned_runs] == \
        ["mine"]
    index.remove_flowrun(("ns", "mine"))
    assert index.observe(("ns", "parent")).owned_runs == ()


def test_listed_final_runs_wait_behind_a_run_that_needs_its_job(k8s):
    async def order() -> list[str]:
        queue = WorkQueue()
        intake = Intake(Index(), queue, EventRecorder(lambda e: None, clock=lambda: k8s.now))
        for n in range(3):
            intake.on_flowrun(None, _final(k8s, f"old-{n}", -10 - n))
        intake.on_flowrun(None, k8s.flowrun("new"))
        intake.on_flowrun("ADDED", _final(k8s, "just-ended", -1))
        return [(await queue.get())[1] for _ in range(5)]

    assert asyncio.run(order()) == ["new", "just-ended", "old-0", "old-1", "old-2"]


def test_listed_live_runs_with_their_job_wait_behind_a_run_that_needs_its_job(k8s):
    """After a restart, a live run's pod carries on by itself: the run created while the
    operator was down gets its Job first, the live runs next, the final ones last."""
    async def order() -> list[str]:
        queue = WorkQueue()
        index = Index()
        intake = Intake(index, queue, EventRecorder(lambda e: None, clock=lambda: k8s.now))
        for n in range(2):
            live = k8s.flowrun(f"live-{n}", state=k8s.state("RUNNING"), attempt=1)
            intake.on_job(None, k8s.job(live))
            intake.on_flowrun(None, live)
        intake.on_flowrun(None, _final(k8s, "old", -10))
        intake.on_flowrun(None, k8s.flowrun("probe"))
        return [(await queue.get())[1] for _ in range(4)]

    assert asyncio.run(order()) == ["probe", "live-0", "live-1", "old"]


def test_a_later_key_marked_again_moves_to_the_front():
    async def order() -> list[str]:
        queue = WorkQueue()
        queue.add("a", rank=queueing.LAST)
        queue.add("b", rank=queueing.LAST)
        queue.add("c")
        queue.add("b")  # news about b: no longer behind the others
        queue.add("c", rank=queueing.LAST)  # a later mark never delays a queued key
        got = [await queue.get() for _ in range(3)]
        assert queue.stats()["queued"] == 0
        return got

    assert asyncio.run(order()) == ["c", "b", "a"]
