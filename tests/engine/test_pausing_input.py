"""pause_flow_run / suspend_flow_run with wait_for_input: the input's JSON schema is
published with the paused state (status.pause in a pod), the wait in a pod is a watch of the
FlowRun (no polling), and the input given on resume comes back validated as the type."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import anyio
import httpx
import pydantic
import pytest

from flowpod import contract, flow, flowruns, pause_flow_run, states, suspend_flow_run, task
from flowpod.engine import _kubeapi, _kubereporter, run_flow_run
from flowpod.reporting import InMemoryReporter, PauseRequest

from engine.kube_fakes import NAME, FakeApi


class Approval(pydantic.BaseModel):
    approved: bool
    approver: str


def _resume_when_paused(reporter: InMemoryReporter, **resume) -> None:
    def watch() -> None:
        deadline = time.monotonic() + 5
        while not reporter.state.is_paused() and time.monotonic() < deadline:
            time.sleep(0.005)
        reporter.resume(**resume)

    threading.Thread(target=watch, daemon=True).start()


def test_pause_publishes_the_input_schema_and_returns_the_validated_model(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def approve() -> dict:
        approval = pause_flow_run(wait_for_input=Approval, timeout=5, poll_interval=0.01)
        assert isinstance(approval, Approval)
        return approval.model_dump()

    _resume_when_paused(reporter, run_input={"approved": True, "approver": "ada"})
    state = run(approve, reporter=reporter)
    assert state.result() == {"approved": True, "approver": "ada"}
    paused = reporter.history[2]
    request = paused.data
    assert isinstance(request, PauseRequest) and request.key == "pause-1"
    assert request.input_schema == Approval.model_json_schema()
    assert request.timeout_at == paused.pause_timeout and not request.suspended
    assert "Waiting for input" in paused.message


def test_pause_for_a_plain_type_uses_a_type_adapter(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def word() -> str:
        return pause_flow_run(wait_for_input=str, timeout=5, poll_interval=0.01).upper()

    _resume_when_paused(reporter, run_input="yes")
    assert run(word, reporter=reporter).result() == "YES"
    assert reporter.history[2].data.input_schema == {"type": "string"}


def test_a_resume_without_the_awaited_input_fails_the_run(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def approve() -> None:
        pause_flow_run(wait_for_input=Approval, timeout=5, poll_interval=0.01)

    _resume_when_paused(reporter)
    state = run(approve, reporter=reporter)
    assert state.is_failed()
    assert "resumed without the input pause 'pause-1' waits for" in state.message


def test_input_the_type_refuses_fails_the_run_naming_the_field(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def approve() -> None:
        pause_flow_run(wait_for_input=Approval, timeout=5, poll_interval=0.01)

    _resume_when_paused(reporter, run_input={"approved": "maybe", "approver": "ada"})
    state = run(approve, reporter=reporter)
    assert state.is_failed() and "approved" in state.message


def test_a_replayed_suspend_returns_the_input_given_on_resume(run, tmp_path) -> None:
    calls: list[str] = []

    @task(persist_result=True)
    def before() -> int:
        calls.append("before")
        return 1

    @flow
    def suspends() -> dict:
        first = before()
        approval = suspend_flow_run(wait_for_input=Approval, timeout=60)
        return {"first": first, **approval.model_dump()}

    from flowpod.engine import RunDeps

    deps = RunDeps(result_dir=tmp_path)
    first = InMemoryReporter()
    state = run(suspends, reporter=first, flow_run_id="r1", deps=deps)
    assert state.name == states.names.SUSPENDED
    assert first.history[-1].name == states.names.SUSPENDED
    assert calls == ["before"]
    again = InMemoryReporter()
    again.resume_inputs["suspend-1"] = {"approved": True, "approver": "ada"}
    state = run(suspends, reporter=again, flow_run_id="r1", deps=deps)
    assert state.result() == {"first": 1, "approved": True, "approver": "ada"}
    assert calls == ["before"], "the task before the suspension ran again"


# -- in a pod: the Kubernetes reporter ------------------------------------------------------
T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _reporter(api: FakeApi) -> _kubereporter.KubeReporter:
    connection = _kubeapi.Connection.explicit("https://api.test", token="sekret")
    client = _kubeapi.FlowRunClient(connection, api.obj["metadata"]["namespace"], NAME,
                                     transport=httpx.MockTransport(api.handler))
    return _kubereporter.KubeReporter(client)


def _running() -> dict:
    return {"state": flowruns.state_to_wire(states.Running(timestamp=T0))}


def test_the_kube_reporter_publishes_status_pause_and_the_next_state_clears_it() -> None:
    api = FakeApi(status=_running())
    reporter = _reporter(api)
    request = PauseRequest("pause-1", {"type": "string"}, T0, False)

    async def go() -> None:
        await reporter.propose_state(states.Paused("waiting", data=request))
        assert api.obj["status"]["pause"] == {"key": "pause-1", "inputSchema": {
            "type": "string"}, "timeoutAt": contract.format_time(T0), "suspended": False}
        await reporter.propose_state(states.Failed("timed out"))

    anyio.run(go)
    assert "pause" not in api.obj["status"]


def test_a_paused_flow_in_a_pod_waits_on_a_watch_and_gets_the_accepted_input(run) -> None:
    api = FakeApi(status={"state": flowruns.state_to_wire(states.Pending(timestamp=T0))})
    reporter = _reporter(api)
    resumed = {"key": "pause-1", "input": {"approved": True, "approver": "ada"},
               "generation": 2}
    # What the operator writes once it accepted spec.resume: Running and status.resumed.
    api.watch_script[NAME] = [
        {**api.obj.get("status", {}), "state": flowruns.state_to_wire(
            states.Running("Resumed (pause 'pause-1') with input", timestamp=T0)),
         "resumed": resumed}]

    @flow
    def approve() -> dict:
        return pause_flow_run(wait_for_input=Approval, timeout=60).model_dump()

    state = anyio.run(lambda: run_flow_run(approve, {}, reporter, handle_sigterm=False))
    assert state.result() == resumed["input"]
    watches = [r for r in api.requests if r.url.params.get("watch") == "1"]
    assert len(watches) == 1, "one watch, no polling"
    (watch,) = watches
    assert watch.url.params["fieldSelector"] == f"metadata.name={NAME}"
    assert watch.url.params["resourceVersion"], "from the version of its own Paused write"
    assert len([r for r in api.requests if r.method == "GET"]) <= 4


def test_a_failed_watch_backs_off_instead_of_looping() -> None:
    api = FakeApi(status=_running())  # no watch script: the fake answers 500
    reporter = _reporter(api)
    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    reporter._asleep = asleep
    anyio.run(lambda: reporter.wait_for_change(30))
    anyio.run(lambda: reporter.wait_for_change(30))
    assert slept == [0.4, 0.8]


@pytest.mark.parametrize("status,expected", [
    ({"resumed": {"key": "pause-1", "input": "yes", "generation": 2}}, (True, "yes")),
    ({"resumed": {"key": "pause-0", "input": "old", "generation": 1}}, (False, None)),
    ({}, (False, None)),
])
def test_resume_input_reads_status_resumed_for_its_key(status, expected) -> None:
    api = FakeApi(status={**_running(), **status})
    assert anyio.run(lambda: _reporter(api).resume_input("pause-1")) == expected


def test_resume_input_keeps_the_nulls_of_the_accepted_spec_resume() -> None:
    given = {"approved": True, "comment": None}
    api = FakeApi(status={**_running(), "resumed": {"key": "pause-1", "generation": 1,
                                                    "input": {"approved": True}}},
                  spec={"entrypoint": "f.py:f", "image": "i", "resume": {"input": given}})
    assert anyio.run(lambda: _reporter(api).resume_input("pause-1")) == (True, given)


def test_every_replay_gets_the_input_of_each_earlier_pause(run, tmp_path) -> None:
    # The backend remembers only the latest resume (status.resumed); the inputs of earlier
    # pauses come from the result store, and a pause already resumed is not paused again.
    from flowpod.engine import RunDeps

    @flow
    def twice() -> list:
        first = pause_flow_run(wait_for_input=str, timeout=5, poll_interval=0.01)
        second = suspend_flow_run(wait_for_input=str, timeout=60)
        third = suspend_flow_run(wait_for_input=str, timeout=60)
        return [first, second, third]

    deps = RunDeps(result_dir=tmp_path)
    reporter = InMemoryReporter()
    _resume_when_paused(reporter, run_input="a")
    assert run(twice, reporter=reporter, flow_run_id="r2", deps=deps).name == "Suspended"
    replay = InMemoryReporter()
    replay.resume_inputs["suspend-2"] = "b"
    assert run(twice, reporter=replay, flow_run_id="r2", deps=deps).name == "Suspended"
    assert [s.name for s in replay.history].count("Paused") == 0, "paused again on replay"
    last = InMemoryReporter()
    last.resume_inputs["suspend-3"] = "c"
    assert run(twice, reporter=last, flow_run_id="r2", deps=deps).result() == ["a", "b", "c"]
