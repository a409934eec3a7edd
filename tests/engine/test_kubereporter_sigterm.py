"""Unit tests of how the in-pod reporter ends a run after SIGTERM (flowpod.engine._kubereporter):
it waits briefly for the operator's exact verdict, leaves a run the operator took back, and
still ends as terminated; against the fake API server of engine.kube_fakes."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from flowpod import states
from flowpod.engine import _kubeapi, _kubereporter
from flowpod.errors import Abort, TerminationSignal

from engine.kube_fakes import NAME, NS, T0, FakeApi, Sleeps
from engine.kube_fakes import run as _run
from engine.kube_fakes import wire as _wire



def _sigterm_reporter(api: FakeApi, sleeps: Sleeps) -> _kubereporter.KubeReporter:
    connection = _kubeapi.Connection.explicit("https://api.test", token="sekret")
    client = _kubeapi.FlowRunClient(connection, NS, NAME, transport=httpx.MockTransport(
        api.handler), asleep=Sleeps())
    return _kubereporter.KubeReporter(client, clock=lambda: T0, crash_verdict_wait=2.0,
                                        asleep=sleeps)


def _sigterm_crash() -> states.State:
    return states.Crashed("Flow run was terminated by SIGTERM without a cancellation request",
                          data=TerminationSignal(15))


def test_an_unrequested_sigterm_lets_the_operators_exact_verdict_stand() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    verdict = _wire(states.Crashed("Evicted: pod p was evicted", timestamp=T0))
    gets = []

    def operator_writes_on_third_read(request: httpx.Request) -> None:
        gets.append(request)
        if len(gets) == 3:
            api.write_status(state=verdict)
        return None

    api.failures = [operator_writes_on_third_read] * 3
    sleeps = Sleeps()
    with pytest.raises(Abort) as refused:
        _run(lambda: _sigterm_reporter(api, sleeps).propose_state(_sigterm_crash()))
    assert refused.value.state.message == "Evicted: pod p was evicted"
    # The verdict stands, and the process still exits as terminated (143), not 0: a Job
    # must never count an evicted pod as succeeded.
    assert isinstance(refused.value.state.data, TerminationSignal)
    assert api.patches() == [] and api.obj["status"]["state"] == verdict
    assert sleeps.delays == [0.1, 0.1]


def test_an_unrequested_sigterm_writes_its_own_crash_when_no_verdict_comes() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    sleeps = Sleeps()
    accepted = _run(lambda: _sigterm_reporter(api, sleeps).propose_state(_sigterm_crash()))
    assert accepted.is_crashed() and api.obj["status"]["state"]["message"].startswith(
        "Flow run was terminated by SIGTERM")
    assert sum(sleeps.delays) == pytest.approx(2.0)


def test_other_crashes_do_not_wait() -> None:
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    sleeps = Sleeps()
    _run(lambda: _sigterm_reporter(api, sleeps).propose_state(states.Crashed("boom")))
    assert sleeps.delays == [] and api.obj["status"]["state"]["message"] == "boom"


@pytest.mark.parametrize("taken_back", [
    states.Pending("waiting for admission by queue q (preempted: pod p was stopped; the run "
                   "goes on in a new pod of Job r-1 when admitted again)",
                   timestamp=T0 + timedelta(seconds=1)),
    states.AwaitingRetry("pod deleted; retrying as attempt 2 of 2",
                         timestamp=T0 + timedelta(seconds=1)),
])
def test_an_unrequested_sigterm_leaves_a_run_the_operator_took_back(taken_back) -> None:
    """A preempted Job (Pending again) or a retry (AwaitingRetry): the run goes on without
    this pod, so its SIGTERM writes nothing and the process still exits as terminated."""
    api = FakeApi(status={"state": _wire(states.Running(timestamp=T0))})
    gets = []

    def operator_writes_on_second_read(request: httpx.Request) -> None:
        gets.append(request)
        if len(gets) == 2:
            api.write_status(state=_wire(taken_back))
        return None

    api.failures = [operator_writes_on_second_read] * 2
    with pytest.raises(Abort) as refused:
        _run(lambda: _sigterm_reporter(api, Sleeps()).propose_state(_sigterm_crash()))
    assert refused.value.state.message == taken_back.message
    assert isinstance(refused.value.state.data, TerminationSignal)
    assert api.patches() == [] and api.obj["status"]["state"] == _wire(taken_back)


def test_an_unrequested_sigterm_before_running_still_crashes_an_older_pending_run() -> None:
    """The Pending the operator wrote when it created the Job is older than this process:
    no verdict came, so the run gets the engine's own Crashed."""
    older = states.Pending("Job r-1 created (attempt 1 of 1)",
                           timestamp=T0 - timedelta(seconds=5))
    api = FakeApi(status={"state": _wire(older)})
    accepted = _run(lambda: _sigterm_reporter(api, Sleeps()).propose_state(_sigterm_crash()))
    assert accepted.is_crashed() and api.obj["status"]["state"]["type"] == "CRASHED"
