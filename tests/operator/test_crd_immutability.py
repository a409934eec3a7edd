"""The real API server keeps a FlowRun's record: its spec never changes (but for cancel: false
to true) and its status is frozen once the run is final.

Applies crds/*.yaml to the local control plane and writes the FlowRun directly, as a user
with kubectl or a stray writer would, to prove the API server refuses every such write with
a message naming the field, while the writes flowpod itself makes still pass.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

import operator_harness as harness
from flowpod import contract, flowruns, states

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
ADHOC = {"entrypoint": "flows/f.py:f", "image": "flowpod/engine:dev", "parameters": {"x": 1}}
FROZEN = "status is frozen once the run is final"


@pytest.fixture(scope="module", autouse=True)
def crds(cluster) -> None:
    harness.apply_crds(cluster)


def _patch(api, namespace: str, name: str, body: Any, *, status: bool = False,
           content_type: str = contract.MERGE_PATCH):
    path = contract.flowrun_path(namespace, name, "status" if status else None)
    return api.request("PATCH", path, body, content_type)


def _refused(response, *texts: str) -> str:
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    for text in texts:
        assert text in message, message
    return message


@pytest.mark.parametrize("spec, change", [
    (ADHOC, {"entrypoint": "flows/g.py:g"}),
    (ADHOC, {"image": "flowpod/engine:other"}),
    (ADHOC, {"parameters": {"x": 2}}),
    (ADHOC, {"parameters": {"x": 1, "y": 2}}),
    (ADHOC, {"parameters": None}),
    ({"deploymentName": "hello"}, {"deploymentName": "other"}),
    ({**ADHOC, "scheduledTime": "2030-01-01T00:00:00Z"},
     {"scheduledTime": "2031-01-01T00:00:00Z"}),
    # Absent at creation: a rule on the field alone would never see these.
    ({"entrypoint": "flows/f.py:f", "image": "i"}, {"parameters": {"x": 1}}),
    (ADHOC, {"scheduledTime": "2030-01-01T00:00:00Z"}),
    (ADHOC, {"resultStorage": "file:///mnt/results"}),
    ({**ADHOC, "reuseResultsFrom": {"flowRunName": "a", "flowRunUid": "u1"}},
     {"reuseResultsFrom": {"flowRunName": "a", "flowRunUid": "u2"}}),
])
def test_every_spec_field_is_immutable(api, namespace, spec, change) -> None:
    created = api.create_flowrun(namespace, "run", **spec)
    field = next(iter(change))
    refused = _patch(api, namespace, "run", {"spec": change})
    _refused(refused, f"spec.{field}: Forbidden: spec.{field} cannot be changed, added or "
                      "removed after the FlowRun is created")
    after = api.flowrun(namespace, "run")
    assert after["spec"] == created["spec"]
    assert after["metadata"]["generation"] == 1


def test_cancel_only_goes_from_false_to_true(api, namespace) -> None:
    api.create_flowrun(namespace, "run", **ADHOC)
    api.cancel(namespace, "run")
    assert api.flowrun(namespace, "run")["spec"]["cancel"] is True
    api.cancel(namespace, "run")  # asking twice is harmless
    _refused(_patch(api, namespace, "run", {"spec": {"cancel": False}}),
             "spec.cancel: Forbidden: spec.cancel cannot go back from true to false")
    assert api.flowrun(namespace, "run")["spec"]["cancel"] is True


def test_metadata_stays_writable(api, namespace) -> None:
    api.create_flowrun(namespace, "run", **ADHOC)
    meta = {"labels": {"team": "data"}, "annotations": {"note": "rerun of yesterday"}}
    response = _patch(api, namespace, "run", {"metadata": meta})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["labels"] == {"team": "data"}


def _final(api, namespace: str, name: str, state: states.State = states.Completed("done"),
           **fields: Any) -> dict:
    """A run that ran and ended, written as the operator and the engine write it."""
    flowrun = api.create_flowrun(namespace, name, **ADHOC)
    status: dict = {}
    steps = [(states.Pending(), {"jobName": f"{name}-1", "attempt": 1}),
             (states.Running(), {}), (state, fields)]
    for step, extra in steps:
        patch = flowruns.status_patch(status, step, now=datetime.now(timezone.utc),
                                      generation=1, **extra)
        response = _patch(api, namespace, name, flowruns.patch_body(
            flowrun["metadata"]["resourceVersion"], patch), status=True)
        assert response.status_code == 200, response.text
        flowrun = response.json()
        status = flowrun["status"]
    return flowrun


@pytest.mark.parametrize("change", [
    {"result": {"value": "forged"}},
    {"result": None},
    {"duration": "1h00m"},
    {"stateHistory": []},
    {"endTime": "2030-01-01T00:00:00Z"},
    {"taskRuns": {"total": 99}},
    {"attempt": 7},
    {"flowRunName": "another"},
    {"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed",
                     "message": "forged", "lastTransitionTime": "2030-01-01T00:00:00Z"}]},
])
def test_a_final_runs_status_is_frozen(api, namespace, cluster, change) -> None:
    before = _final(api, namespace, "done", result={"value": {"n": 1}})
    refused = _refused(_patch(api, namespace, "done", {"status": change}, status=True),
                       f"{FROZEN} (COMPLETED)")
    assert "cannot change from" not in refused
    after = api.flowrun(namespace, "done")
    assert after["status"] == before["status"]
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Succeeded", "--timeout=10s",
                    "flowrun/done")


def test_a_message_only_change_says_the_status_is_frozen(api, namespace) -> None:
    before = _final(api, namespace, "done", states.Failed("boom"))
    state = dict(before["status"]["state"], message="it was fine really")
    refused = _refused(_patch(api, namespace, "done", {"status": {"state": state}}, status=True),
                       f"{FROZEN} (FAILED)")
    assert "cannot change from FAILED to FAILED" not in refused


def test_a_json_patch_cannot_rewrite_a_final_status_either(api, namespace) -> None:
    _final(api, namespace, "done")
    body = [{"op": "replace", "path": "/status/state/name", "value": "Cached"}]
    refused = _patch(api, namespace, "done", body, status=True, content_type=contract.JSON_PATCH)
    _refused(refused, f"{FROZEN} (COMPLETED)")


def test_an_ended_run_cannot_be_cancelled(api, namespace) -> None:
    _final(api, namespace, "done")
    _refused(_patch(api, namespace, "done", {"spec": {"cancel": True}}),
             "spec.cancel: Forbidden: spec.cancel cannot change once the run has ended "
             "(COMPLETED): there is nothing to cancel")
    flowrun = api.flowrun(namespace, "done")
    assert flowrun["spec"]["cancel"] is False and flowrun["metadata"]["generation"] == 1


def test_how_the_pod_ended_is_recorded_once(api, namespace) -> None:
    """The engine writes the final state before its process exits: the operator records the
    exit code, reason and pod afterwards, each once."""
    _final(api, namespace, "done", states.Crashed("killed"))
    recorded = _patch(api, namespace, "done", {"status": {
        "exitCode": 143, "reason": "Error", "podName": "done-1-abcde"}}, status=True)
    assert recorded.status_code == 200, recorded.text
    # The Job's deadline, seen after the pod ended, is the real cause: corrected once.
    corrected = _patch(api, namespace, "done", {"status": {"reason": "DeadlineExceeded"}},
                       status=True)
    assert corrected.status_code == 200, corrected.text
    for change in ({"exitCode": 0}, {"exitCode": None}, {"podName": "other"},
                   {"reason": "Completed"}, {"reason": None}):
        _refused(_patch(api, namespace, "done", {"status": change}, status=True),
                 f"{FROZEN} (CRASHED)")
    status = api.flowrun(namespace, "done")["status"]
    assert (status["exitCode"], status["reason"], status["podName"]) == (
        143, "DeadlineExceeded", "done-1-abcde")


def test_a_status_still_moving_is_writable(api, namespace) -> None:
    api.create_flowrun(namespace, "run", **ADHOC)
    for change in ({"state": flowruns.state_to_wire(states.Running(timestamp=T0))},
                   {"taskRuns": {"total": 3}}, {"taskRuns": {"total": 4}},
                   {"exitCode": 1}, {"exitCode": None}):
        response = _patch(api, namespace, "run", {"status": change}, status=True)
        assert response.status_code == 200, response.text
