"""The reconcile loop without a cluster: the shared fake API server (tests/fakeapi.py),
reached over loopback by the operator's real kubernetes-asyncio client, behind the real
Index, queue, decision, actuator and Events. Proves the 409 path (re-read, re-decide, never
overwrite), the one-Job rule across restarts, refused Jobs, and that Events follow the
history."""

from __future__ import annotations

import asyncio
import copy
from contextlib import ExitStack
from typing import Any, Mapping

import pytest
from kubernetes_asyncio import client

from fakeapi import FakeApi, status_response
from flowpod import contract
from flowpod_operator._runtime import eventing as _eventing
from flowpod_operator._runtime import indexing as _indexing
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.loop import Reconciler


class Fake(FakeApi):
    """The shared fake, holding the test's FlowRun ("ns"/"run"), with views for asserts."""

    @property
    def flowrun(self) -> dict[str, Any]:
        return self.get("flowruns", "ns", "run") or {}

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return {job["metadata"]["name"]: job for job in self.items("jobs", "ns")}

    @property
    def patches(self) -> list[dict[str, Any]]:
        """The status patches the server applied (refused ones are not)."""
        return [body["status"] for body in self.applied if "status" in body]

    @property
    def events(self) -> list[Mapping[str, Any]]:
        return self.items("events", "ns")


@pytest.fixture
def loop():
    """Run coroutines on one event loop per test (the API client lives on it)."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture
def setup(k8s, loop):
    with ExitStack() as stack:
        def make(flowrun: dict[str, Any]):
            api = Fake(created_at=contract.format_time(k8s.now, fraction=False))
            api.add(copy.deepcopy(flowrun))
            url = stack.enter_context(api.serve())
            kube = KubeApi(loop(_client(url)))
            stack.callback(loop, kube._client.close())
            index = _indexing.Index()
            # One poster keeps the Events in the order they were queued (the default, 4,
            # posts concurrently: order on the server is then not the queue's).
            events = _eventing.EventRecorder(kube.post_event, clock=lambda: k8s.now, workers=1)
            reconciler = Reconciler(index, kube, events, clock=lambda: k8s.now)
            index.put_deployment(k8s.deployment())
            reconciler.intake.on_flowrun("ADDED", copy.deepcopy(flowrun))
            return api, index, reconciler
        yield make


async def _client(url: str) -> client.ApiClient:
    return client.ApiClient(configuration=client.Configuration(host=url))


def _state_names(api: Fake) -> list[str]:
    return [entry["name"] for entry in api.flowrun["status"]["stateHistory"]]


def test_new_run_gets_one_job_and_pending(setup, k8s, loop):
    api, index, reconciler = setup(k8s.flowrun())
    loop(reconciler.reconcile(("ns", "run")))
    assert list(api.jobs) == ["run-1"]
    assert _state_names(api) == ["Scheduled", "Pending"]
    # Deciding again (a resync, or a restarted operator with the same view) changes nothing.
    loop(reconciler.reconcile(("ns", "run")))
    assert len(api.patches) == 1 and list(api.jobs) == ["run-1"]


def test_restarted_operator_does_not_make_a_second_job(setup, k8s, loop):
    api, _, first = setup(k8s.flowrun())
    loop(first.reconcile(("ns", "run")))
    # A new operator whose watch has not shown the Job yet: the create gets AlreadyExists.
    api.update("flowruns", "ns", "run", status={})
    second_index = _indexing.Index()
    second_index.put_deployment(k8s.deployment())
    second = Reconciler(second_index, first.api, first.events, clock=lambda: k8s.now)
    second.intake.on_flowrun("ADDED", copy.deepcopy(api.flowrun))
    loop(second.reconcile(("ns", "run")))
    assert list(api.jobs) == ["run-1"]
    assert api.flowrun["status"]["jobName"] == "run-1"


def test_conflict_is_reread_and_redecided_not_overwritten(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    index.put_pod(k8s.pod(run, exit_code=0))  # the pod ended: it looks like a crash...
    # ...but the engine's Completed landed just before the operator's write.
    completed = copy.deepcopy(run["status"])
    completed["state"] = k8s.state("COMPLETED", offset=0)
    completed["stateHistory"] = [k8s.state("RUNNING"), completed["state"]]
    api.before_patch = lambda fake: fake.update("flowruns", "ns", "run", status=completed)
    loop(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["type"] == "COMPLETED"
    assert all("state" not in patch for patch in api.patches)  # no Crashed was written
    assert api.flowrun["status"]["exitCode"] == 0


def test_refused_job_fails_the_run(setup, k8s, loop):
    api, _, reconciler = setup(k8s.flowrun())
    api.failures.append(lambda request: status_response(
        422, "Invalid", 'Job.batch "run-1" is invalid: x') if request.method == "POST" else None)
    loop(reconciler.reconcile(("ns", "run")))
    state = api.flowrun["status"]["state"]
    assert state["type"] == "FAILED"
    assert state["message"].startswith('Job run-1 could not be created: Job.batch "run-1" '
                                       'is invalid: x')


def test_events_follow_each_new_state(setup, k8s, loop):
    api, _, reconciler = setup(k8s.flowrun())

    async def scenario() -> None:
        tasks = reconciler.events.start()
        await reconciler.reconcile(("ns", "run"))
        for _ in range(500):  # Events are posted in the background, over real HTTP
            if len(api.events) >= 2 and not reconciler.events.pending():
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop(scenario())
    assert [(e["reason"], e["type"]) for e in api.events] == [("Scheduled", "Normal"),
                                                              ("Pending", "Normal")]
    assert api.events[1]["involvedObject"]["kind"] == "FlowRun"
    assert api.events[1]["message"] == "Job run-1 created (attempt 1 of 1)"


def test_start_up_listing_sets_the_event_baseline(k8s):
    seen: list[Mapping[str, Any]] = []
    recorder = _eventing.EventRecorder(lambda e: None, clock=lambda: k8s.now)
    recorder.record = lambda body, kind, reason, message, **_: seen.append(reason)  # type: ignore
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    recorder.observe(run, baseline=True)
    assert seen == []
    later = copy.deepcopy(run)
    crashed = k8s.state("CRASHED", offset=0)
    later["status"]["state"] = crashed
    later["status"]["stateHistory"].append(crashed)
    recorder.observe(later)
    assert seen == ["Crashed"]


def test_deep_resync_sees_what_the_watch_missed(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    job = k8s.job(run, failed=1)
    api.add(job)
    index.put_job(job)
    index.put_pod(k8s.pod(run))  # deleted while the watch was reconnecting: never told
    loop(reconciler.reconcile(("ns", "run")))
    # The cached view alone says all is well.
    assert api.flowrun["status"]["state"]["type"] == "RUNNING"
    reconciler._deep.add(("ns", "run"))
    loop(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["type"] == "CRASHED"
    assert api.flowrun["status"]["state"]["message"].startswith("pod deleted: the pod of Job")
    api.remove("flowruns", "ns", "run")  # and a FlowRun deleted meanwhile is forgotten
    reconciler._deep.add(("ns", "run"))
    loop(reconciler.reconcile(("ns", "run")))
    assert index.flowrun(("ns", "run")) is None


def test_a_crash_keeps_the_pods_last_log_lines_in_the_same_patch(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    index.put_pod(k8s.pod(run, exit_code=137, name="run-1-abcde"))
    api.logs["run-1-abcde"] = [f"line {i}" for i in range(80)]
    loop(reconciler.reconcile(("ns", "run")))
    (patch,) = [p for p in api.patches if "state" in p]
    assert patch["state"]["type"] == "CRASHED"
    assert patch["logTail"] == [f"line {i}" for i in range(60, 80)]
    log_reads = [r for r in api.requests if r.url.path.endswith("/log")]
    assert [dict(r.url.params) for r in log_reads] == [
        {"container": "flow", "tailLines": "20", "limitBytes": "20480"}]


def test_a_crash_is_written_without_a_log_tail_when_the_log_cannot_be_read(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    index.put_pod(k8s.pod(run, exit_code=137, name="run-1-abcde"))  # no log: 404
    loop(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["type"] == "CRASHED"
    assert "logTail" not in api.flowrun["status"]
def test_events_carry_increasing_microsecond_times_even_on_a_still_clock(k8s):
    posted: list[dict[str, Any]] = []
    recorder = _eventing.EventRecorder(lambda e: None, clock=lambda: k8s.now)
    recorder.record = _eventing.EventRecorder.record.__get__(recorder)  # the real one
    recorder._queue.put_nowait = posted.append  # type: ignore[method-assign]
    run = k8s.flowrun(state=k8s.state("SCHEDULED"))
    recorder.observe(run, baseline=True)
    later = copy.deepcopy(run)
    history = [k8s.state("SCHEDULED"), k8s.state("PENDING", message="Job run-1 created"),
               k8s.state("RUNNING"), k8s.state("COMPLETED")]
    later["status"].update(state=history[-1], stateHistory=history)
    recorder.observe(later)
    assert [e["reason"] for e in posted] == ["Pending", "Running", "Completed"]
    times = [e["eventTime"] for e in posted]
    assert times == ["2026-03-01T12:00:00.000000Z", "2026-03-01T12:00:00.000001Z",
                     "2026-03-01T12:00:00.000002Z"]
    names = [e["metadata"]["name"] for e in posted]
    assert names == sorted(names) and len(set(names)) == 3
    # No whole-second first/lastTimestamp: kubectl would order by those first.
    assert not any("lastTimestamp" in e or "firstTimestamp" in e for e in posted)
    assert {e["action"] for e in posted} == {"Transition"}


def test_a_waiting_problem_is_a_warning_event(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    index.put_pod(k8s.pod(run, waiting="ErrImagePull", waiting_message="not found"))

    async def scenario() -> None:
        tasks = reconciler.events.start()
        await reconciler.reconcile(("ns", "run"))
        for _ in range(500):
            if len(api.events) >= 2 and not reconciler.events.pending():
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop(scenario())
    assert api.flowrun["status"]["state"]["message"].startswith("ErrImagePull: the image")
    assert [(e["reason"], e["type"]) for e in api.events] == [("Pending", "Normal"),
                                                              ("ErrImagePull", "Warning")]


def test_the_operator_labels_a_run_and_goes_on_without_the_permission(setup, k8s, loop):
    bare = k8s.flowrun()
    del bare["metadata"]["labels"]
    api, _, reconciler = setup(bare)
    loop(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["metadata"]["labels"] == {contract.LABEL_DEPLOYMENT: "hello"}
    assert _state_names(api) == ["Scheduled", "Pending"]
    # An operator whose RBAC predates labelling: it says so once and runs the run anyway.
    api, _, reconciler = setup(bare)
    forbid = lambda request: status_response(403, "Forbidden", "no patch") if (  # noqa: E731
        request.method == "PATCH" and not request.url.path.endswith("/status")) else None
    api.failures.extend([forbid] * 50)  # each request takes one
    loop(reconciler.reconcile(("ns", "run")))
    assert _state_names(api) == ["Scheduled", "Pending"]
    assert "labels" not in api.flowrun["metadata"]
    loop(reconciler.reconcile(("ns", "run")))
    label_patches = [r for r in api.requests if r.method == "PATCH"
                     and not r.url.path.endswith("/status")]
    assert len(label_patches) == 1


def test_without_permission_to_list_events_a_podless_job_just_waits(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run, created=-10))
    forbid = lambda request: status_response(403, "Forbidden", "no list") if (  # noqa: E731
        request.url.path.endswith("/events")) else None
    api.failures.extend([forbid] * 50)  # each request takes one
    loop(reconciler.reconcile(("ns", "run")))
    loop(reconciler.reconcile(("ns", "run")))
    assert api.flowrun["status"]["state"]["message"] == "Job run-1 created"
    listed = [r for r in api.requests if r.url.path.endswith("/events")]
    assert len(listed) == 1  # said once, not asked again


# --- hooks after a hard kill ---------------------------------------------------------------

def _killed_run(k8s):
    return k8s.flowrun(state=k8s.state("CRASHED", message="OOMKilled: ..."), attempt=1,
                       exitCode=137, reason="OOMKilled", podName="run-1-abcde",
                       hooks={"declared": ["on_crashed"]})


def test_a_killed_run_gets_one_hook_job_across_restarts(setup, k8s, loop):
    run = _killed_run(k8s)
    api, index, first = setup(run)
    index.put_job(k8s.job(run))
    loop(first.reconcile(("ns", "run")))
    assert sorted(api.jobs) == ["run-hooks"]
    assert api.flowrun["status"]["hooks"]["runner"] == "Job"
    assert api.flowrun["status"]["state"]["type"] == "CRASHED"
    # A restarted operator, whose watch has not shown the hook Job yet, makes none more.
    second_index = _indexing.Index()
    second_index.put_deployment(k8s.deployment())
    second = Reconciler(second_index, first.api, first.events, clock=lambda: k8s.now)
    second.intake.on_flowrun("ADDED", copy.deepcopy(api.flowrun))
    loop(second.reconcile(("ns", "run")))
    assert sorted(api.jobs) == ["run-hooks"]


def test_the_engines_claim_wins_over_a_stale_view(setup, k8s, loop):
    run = k8s.flowrun(state=k8s.state("CRASHED"), attempt=1, hooks={"declared": ["on_crashed"]})
    api, index, reconciler = setup(run)
    index.put_job(k8s.job(run))
    # The engine claimed its hooks after the operator's view was taken (409, re-read).
    api.update("flowruns", "ns", "run", status={
        **api.flowrun["status"], "hooks": {"declared": ["on_crashed"], "runner": "Engine",
                                           "outcome": "Succeeded"}})
    loop(reconciler.reconcile(("ns", "run")))
    assert "run-hooks" not in api.jobs
    assert api.flowrun["status"]["hooks"]["runner"] == "Engine"


def test_hook_outcomes_are_announced_once(k8s):
    seen: list[tuple[str, str, str]] = []
    recorder = _eventing.EventRecorder(lambda e: None, clock=lambda: k8s.now)
    recorder.record = lambda body, kind, reason, message, **_: seen.append(  # type: ignore
        (kind, reason, message))
    run = _killed_run(k8s)
    recorder.observe(run, baseline=True)
    for outcome, message in (("Pending", "hook Job run-hooks runs the on_crashed hooks"),
                             ("Running", "running"), ("Failed", "on_crashed hook x raised"),
                             ("Failed", "on_crashed hook x raised")):
        later = copy.deepcopy(run)
        later["status"]["hooks"].update(runner="Job", outcome=outcome, message=message)
        recorder.observe(later)
    assert seen == [("Normal", "HookJobCreated", "hook Job run-hooks runs the on_crashed hooks"),
                    ("Warning", "HooksFailed", "on_crashed hook x raised")]


def test_a_run_found_deleted_by_a_write_frees_its_slot_at_once(setup, k8s, loop):
    """A status write that finds the run gone (404) releases its slot as its DELETED event
    would: the run waiting for that slot is queued now, not at the next resync. (The DELETED
    event that comes later finds nothing left to release.)"""
    holder = k8s.flowrun("holder", state=k8s.state("PENDING"), attempt=1, jobName="holder-1")
    api, index, reconciler = setup(holder)
    index.put_deployment({**k8s.deployment(), "spec": {
        **k8s.deployment()["spec"], "concurrencyLimit": 1}})
    waiting = k8s.flowrun("waiting")
    reconciler.intake.on_flowrun("ADDED", copy.deepcopy(waiting))
    index.put_job(k8s.job(holder))
    index.put_pod(k8s.pod(holder, name="holder-1-abcde"))  # news: a podName to record
    assert reconciler.slots.verdict(waiting).start is False
    while reconciler.queue.stats()["queued"]:  # what the ADDED events queued
        loop(_next(reconciler))
    api.remove("flowruns", "ns", "holder")  # deleted; its DELETED event not yet seen
    loop(reconciler.reconcile(("ns", "holder")))
    assert index.flowrun(("ns", "holder")) is None
    assert loop(_next(reconciler)) == ("ns", "waiting")


async def _next(reconciler: Reconciler) -> Any:
    key = await asyncio.wait_for(reconciler.queue.get(), 1)
    reconciler.queue.done(key)
    return key
