"""The reconcile loop without a cluster: a fake API behind the real Index, queue, decision
and actions. Proves the 409 path (re-read, re-decide, never overwrite), the one-Job rule
across restarts, refused Jobs, and that Events follow the history."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime
from typing import Any, Mapping

import pytest

from flowpod import flowruns

from flowpod_operator._runtime import kubeapi as _acting

from flowpod_operator._runtime import eventing as _eventing

from flowpod_operator._runtime import indexing as _indexing

from flowpod_operator._runtime import loop as _reconciling


class FakeApi:
    """Just enough of _acting.KubeApi: FlowRuns held here, writes recorded."""

    def __init__(self, flowrun: dict[str, Any], now: datetime) -> None:
        self.flowrun = flowrun
        self.now = now
        self.jobs: dict[str, dict[str, Any]] = {}
        self.patches: list[dict[str, Any]] = []
        self.events: list[Mapping[str, Any]] = []
        self.conflict_with: dict[str, Any] | None = None  # status another writer lands first
        self.job_reply: _acting.Reply | None = None

    def _bump(self) -> None:
        meta = self.flowrun["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    async def get_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.flowrun) if self.flowrun else None

    async def patch_status(self, namespace, name, resource_version, patch) -> _acting.Reply:
        if self.conflict_with is not None:
            self.flowrun["status"] = self.conflict_with
            self.conflict_with = None
            self._bump()
        if resource_version != self.flowrun["metadata"]["resourceVersion"]:
            return _acting.Reply(409, {"message": "the object has been modified"})
        self.patches.append(patch)
        status = self.flowrun.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        self._bump()
        return _acting.Reply(200, copy.deepcopy(self.flowrun))

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> _acting.Reply:
        if self.job_reply is not None:
            return self.job_reply
        name = manifest["metadata"]["name"]
        if name in self.jobs:
            return _acting.Reply(409, {"reason": "AlreadyExists"})
        job = copy.deepcopy(dict(manifest))
        job["metadata"].update(uid=f"uid-{name}", resourceVersion="7",
                               creationTimestamp=flowruns.format_time(self.now, fraction=False))
        self.jobs[name] = job
        return _acting.Reply(201, job)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def get_deployment(self, namespace: str, name: str) -> None:
        return None

    async def list_children(self, namespace: str, selector: str):
        return list(self.jobs.values()), []

    async def post_event(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)


@pytest.fixture
def setup(k8s):
    def make(flowrun: dict[str, Any]):
        api = FakeApi(flowrun, k8s.now)
        index = _indexing.Index()
        events = _eventing.EventRecorder(api.post_event, clock=lambda: k8s.now)
        reconciler = _reconciling.Reconciler(index, api, events, clock=lambda: k8s.now)
        index.put_deployment(k8s.deployment())
        reconciler.intake.on_flowrun("ADDED", copy.deepcopy(flowrun))
        return api, index, reconciler
    return make


def _state_names(api: FakeApi) -> list[str]:
    return [entry["name"] for entry in api.flowrun["status"]["stateHistory"]]


def test_new_run_gets_one_job_and_pending(setup, k8s):
    api, index, reconciler = setup(k8s.flowrun())
    asyncio.run(reconciler.reconcile(("ns", "run")))
    assert list(api.jobs) == ["run-1"]
    assert _state_names(api) == ["Scheduled", "Pending"]
    # Deciding again (a resync, or a restarted operator with the same view) changes nothing.
    asyncio.run(reconciler.reconcile(("ns", "run")))
    assert len(api.patches) == 1 and list(api.jobs) == ["run-1"]


def test_restarted_operator_does_not_make_a_second_job(setup, k8s):
    api, _, first = setup(k8s.flowrun())
    asyncio.run(first.reconcile(("ns", "run")))
    # A new operator whose watch has not shown the Job yet: the create gets AlreadyExists.
    api.flowrun["status"] = {}
    second_index = _indexing.Index()
    second_index.put_deployment(k8s.deployment())
    second = _reconciling.Reconciler(second_index, api, first.events, clock=lambda: k8s.now)
    second.intake.on_flowrun("ADDED", copy.deepcopy(api.flowrun))
    asyncio.run(second.reconcile(("ns", "run")))
    assert list(api.jobs) == ["run-1"]
    assert api.flowrun["status"]["jobName"] == "run-1"


def test_conflict_is_reread_and_redecided_not_overwritten(setup, k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    index.put_pod(k8s.pod(run, exit_code=0))  # the pod ended: it looks like a crash...
    # ...but the engine's Completed landed just before the operator's write.
    completed = copy.deepcopy(run["status"])
    completed["state"] = k8s.state("COMPLETED", offset=0)
    completed["stateHistory"] = [k8s.state("RUNNING"), completed["state"]]
    api.conflict_with = completed
    asyncio.run(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["type"] == "COMPLETED"
    assert all("state" not in patch for patch in api.patches)  # no Crashed was written
    assert api.flowrun["status"]["exitCode"] == 0


def test_refused_job_fails_the_run(setup, k8s):
    api, _, reconciler = setup(k8s.flowrun())
    api.job_reply = _acting.Reply(422, {"message": "Job.batch \"run-1\" is invalid: x"})
    asyncio.run(reconciler.reconcile(("ns", "run")))
    state = api.flowrun["status"]["state"]
    assert state["type"] == "FAILED"
    assert state["message"].startswith('Job run-1 could not be created: Job.batch "run-1" '
                                       'is invalid: x')


def test_events_follow_each_new_state(setup, k8s):
    api, _, reconciler = setup(k8s.flowrun())

    async def scenario() -> None:
        tasks = reconciler.events.start()
        await reconciler.reconcile(("ns", "run"))
        for _ in range(20):
            await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert [(e["reason"], e["type"]) for e in api.events] == [("Scheduled", "Normal"),
                                                              ("Pending", "Normal")]
    assert api.events[1]["involvedObject"]["kind"] == "FlowRun"
    assert api.events[1]["message"] == "Job run-1 created (attempt 1 of 1)"


def test_start_up_listing_sets_the_event_baseline(k8s):
    seen: list[Mapping[str, Any]] = []
    recorder = _eventing.EventRecorder(lambda e: None, clock=lambda: k8s.now)
    recorder.record = lambda body, kind, reason, message: seen.append(reason)  # type: ignore
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    recorder.observe(run, baseline=True)
    assert seen == []
    later = copy.deepcopy(run)
    crashed = k8s.state("CRASHED", offset=0)
    later["status"]["state"] = crashed
    later["status"]["stateHistory"].append(crashed)
    recorder.observe(later)
    assert seen == ["Crashed"]


def test_deep_resync_sees_what_the_watch_missed(setup, k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    job = k8s.job(run, failed=1)
    api.jobs["run-1"] = job
    index.put_job(job)
    index.put_pod(k8s.pod(run))  # deleted while the watch was reconnecting: never told
    asyncio.run(reconciler.reconcile(("ns", "run")))
    # The cached view alone says all is well.
    assert api.flowrun["status"]["state"]["type"] == "RUNNING"
    reconciler._deep.add(("ns", "run"))
    asyncio.run(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["type"] == "CRASHED"
    assert api.flowrun["status"]["state"]["message"].startswith("pod deleted: the pod of Job")
    api.flowrun = {}  # and a FlowRun deleted meanwhile is forgotten
    reconciler._deep.add(("ns", "run"))
    asyncio.run(reconciler.reconcile(("ns", "run")))
    assert index.flowrun(("ns", "run")) is None
