"""The in-pod reporter writes a final state and all that goes with it in one write.

A final run's status is frozen by the CRD (the shared fake API server refuses later writes
the same way), so the result, even one holding nulls, and the task-run summary must ride
with the final state, and a summary flush that arrives after it must write nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

import anyio
import httpx
import pytest

from flowpod import contract, flowruns, reporting, states
from flowpod.engine import _kubeapi, _kubereporter

from engine.kube_fakes import NAME, NS, FakeApi, Sleeps

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
NULLS = {"a": None, "b": [None, {"c": None}]}


def _reporter(api: FakeApi) -> _kubereporter.KubeReporter:
    connection = _kubeapi.Connection.explicit("https://api.test", token="sekret")
    client = _kubeapi.FlowRunClient(connection, NS, NAME, transport=httpx.MockTransport(
        api.handler), asleep=Sleeps())
    return _kubereporter.KubeReporter(client, clock=lambda: T0)


def _run(fn: Callable[[], Any]) -> Any:
    return anyio.run(fn)


def _running(**fields: Any) -> FakeApi:
    return FakeApi(status={"state": flowruns.state_to_wire(states.Running(timestamp=T0)),
                           "stateHistory": [], **fields})


def _summary(**counts: int) -> reporting.TaskRunSummary:
    return reporting.TaskRunSummary(total=sum(counts.values()), counts=counts, failed=(),
                                    failed_total=0)


def _patch_requests(api: FakeApi) -> list[httpx.Request]:
    return [r for r in api.requests if r.method == "PATCH"]


def test_a_result_holding_nulls_goes_with_the_final_state() -> None:
    api = _running(podName="run-1-abcde", taskRuns={"total": 1, "counts": {"RUNNING": 1}})
    reporter = _reporter(api)
    _run(lambda: reporter.flush_task_runs(_summary(COMPLETED=1)))
    _run(lambda: reporter.propose_state(states.Completed(data=NULLS)))
    final = _patch_requests(api)[-1]
    assert len(_patch_requests(api)) == 2  # the flush, then one write of the final state
    assert final.headers["content-type"] == contract.JSON_PATCH
    assert json.loads(final.content)[0] == {"op": "replace", "path": "/metadata/resourceVersion",
                                            "value": "2"}
    status = api.obj["status"]
    assert status["result"] == {"value": NULLS}
    assert status["state"]["type"] == "COMPLETED" and status["endTime"]
    assert status["podName"] == "run-1-abcde"  # the rest of the status is kept
    assert status["taskRuns"]["counts"] == {"COMPLETED": 1}
    assert [c["status"] for c in status["conditions"]] == ["True", "True"]


def test_a_result_holding_nulls_is_redecided_after_a_conflict() -> None:
    api = _running()
    api.before_patch = lambda fake: fake.write_status(podName="run-1-abcde")
    _run(lambda: _reporter(api).propose_state(states.Completed(data=NULLS)))
    first, second = _patch_requests(api)
    assert json.loads(first.content)[0]["value"] == "1"  # stale: 409, re-read
    status = api.obj["status"]
    assert status["podName"] == "run-1-abcde" and status["result"] == {"value": NULLS}


@pytest.mark.parametrize("final", [states.Completed("ok"), states.Failed("boom")])
def test_the_final_state_carries_the_last_task_run_summary(final) -> None:
    api = _running(taskRuns={"total": 2, "counts": {"RUNNING": 2}})
    reporter = _reporter(api)
    _run(reporter.refresh)
    api.failures.append(lambda request: httpx.Response(400, json={"message": "bad luck"}))
    with pytest.raises(_kubeapi.KubeApiError):  # the engine logs a failed flush, goes on
        _run(lambda: reporter.flush_task_runs(_summary(COMPLETED=1, FAILED=1)))
    _run(lambda: reporter.propose_state(final))
    status = api.obj["status"]
    assert status["state"]["type"] == final.type.value
    assert status["taskRuns"]["counts"] == {"COMPLETED": 1, "FAILED": 1}  # RUNNING deleted


def test_a_flush_after_the_final_state_writes_nothing() -> None:
    api = _running()
    reporter = _reporter(api)
    _run(lambda: reporter.propose_state(states.Completed("done")))
    _run(lambda: reporter.flush_task_runs(_summary(COMPLETED=3)))
    assert len(_patch_requests(api)) == 1
    assert "taskRuns" not in api.obj["status"]


def test_a_flush_overtaken_by_the_final_state_writes_nothing() -> None:
    """The periodic flush is in flight when the final state (e.g. the operator's) lands."""
    api = _running()
    crashed = flowruns.state_to_wire(states.Crashed("pod deleted", timestamp=T0))
    api.before_patch = lambda fake: fake.write_status(state=crashed)
    _run(lambda: _reporter(api).flush_task_runs(_summary(RUNNING=1)))
    assert len(_patch_requests(api)) == 1  # refused as stale; the re-read shows it final
    assert api.obj["status"]["state"]["type"] == "CRASHED"
    assert "taskRuns" not in api.obj["status"]
