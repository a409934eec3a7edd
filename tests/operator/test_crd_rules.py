"""The real API server enforces the FlowRun contract: schema, descriptions and CEL rules.

Applies crds/*.yaml to the local control plane (fixture `cluster`) and writes FlowRun status
directly, as the operator and the engine do, to prove the API server itself refuses illegal
state transitions — for every pair of state types, against flowpod.states' table.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import httpx
import pytest

import operator_harness as harness

from flowpod import contract, flowruns, states

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def api(cluster) -> Iterator[httpx.Client]:
    """An admin HTTP client, with the CRDs applied and established."""
    harness.apply_crds(cluster)
    context = ssl.create_default_context(cafile=str(cluster.pki["ca.crt"]))
    context.load_cert_chain(str(cluster.pki["admin.crt"]), str(cluster.pki["admin.key"]))
    with httpx.Client(base_url=cluster.api_url, verify=context, timeout=30) as client:
        yield client


def _create(api: httpx.Client, namespace: str, name: str, spec: dict | None = None) -> dict:
    body = {"apiVersion": contract.API_VERSION, "kind": "FlowRun", "metadata": {"name": name},
            "spec": spec or {"entrypoint": "flows/f.py:f", "image": "flowpod/engine:dev"}}
    response = api.post(contract.flowrun_path(namespace), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _patch_status(api: httpx.Client, namespace: str, name: str, body: Any,
                  content_type: str = contract.MERGE_PATCH) -> httpx.Response:
    return api.patch(contract.flowrun_path(namespace, name, "status"), json=body,
                     headers={"Content-Type": content_type})


def _state_body(state_type: states.StateType, message: str) -> dict:
    state = states.State(state_type, message=message, timestamp=T0)
    return {"status": {"state": flowruns.state_to_wire(state)}}


def _explain(cluster, field: str) -> str:
    # The API server publishes a new CRD's OpenAPI a little after it is Established.
    deadline = time.monotonic() + 30
    while True:
        result = cluster.kubectl("explain", field, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout
        time.sleep(0.2)


def test_kubectl_explain_teaches_the_fields(api, cluster) -> None:
    spec = _explain(cluster, "flowruns.spec")
    assert "deploymentName" in spec and "Mutually exclusive" in spec
    assert "package.module:flow_function" in spec
    assert "never left" in _explain(cluster, "fr.status.state.type")
    pending = _explain(cluster, "fdeploy.spec.pendingTimeoutSeconds")
    assert "unstarted" in pending and "Crashed" in pending


def test_every_state_transition_follows_the_engine_table(api, namespace) -> None:
    for old in states.StateType:
        for new in states.StateType:
            name = f"t-{old.value}-{new.value}".lower()
            _create(api, namespace, name)
            first = _patch_status(api, namespace, name, _state_body(old, "before"))
            assert first.status_code == 200, first.text  # any state may be the first
            second = _patch_status(api, namespace, name, _state_body(new, "after"))
            if states.is_transition_allowed(old, new):
                assert second.status_code == 200, f"{old.value}->{new.value}: {second.text}"
                assert second.json()["status"]["state"]["type"] == new.value
            else:
                assert second.status_code == 422, f"{old.value}->{new.value}: {second.text}"
                # A new message on the same final type is refused as a frozen status.
                expected = (f"status is frozen once the run is final ({old.value})"
                            if old is new and old in states.TERMINAL_TYPES else
                            f"status.state.type cannot change from {old.value} to {new.value}")
                assert expected in second.json()["message"]


@pytest.mark.parametrize("old, reason", [
    (states.StateType.COMPLETED, "COMPLETED is terminal"),
    (states.StateType.CANCELLING, "CANCELLING may only become CANCELLED"),
])
def test_the_api_server_refuses_running_after(api, namespace, old, reason) -> None:
    _create(api, namespace, "run")
    assert _patch_status(api, namespace, "run", _state_body(old, "x")).status_code == 200
    refused = _patch_status(api, namespace, "run", _state_body(states.StateType.RUNNING, "y"))
    assert refused.status_code == 422
    assert reason in refused.json()["message"]
    # kubectl users see the same message.
    current = api.get(contract.flowrun_path(namespace, "run")).json()
    assert current["status"]["state"]["type"] == old.value


def test_other_status_fields_stay_writable_after_the_end(api, namespace) -> None:
    _create(api, namespace, "done")
    _patch_status(api, namespace, "done", _state_body(states.StateType.CRASHED, "oom"))
    later = _patch_status(api, namespace, "done", {"status": {"exitCode": 137,
                                                              "reason": "OOMKilled"}})
    assert later.status_code == 200, later.text
    assert later.json()["status"]["exitCode"] == 137


def test_the_hook_record_changes_after_the_end_until_its_outcome_is_final(api,
                                                                          namespace) -> None:
    _create(api, namespace, "killed")
    running = _state_body(states.StateType.RUNNING, "")
    running["status"]["hooks"] = {"declared": ["on_crashed"]}
    _patch_status(api, namespace, "killed", running)
    _patch_status(api, namespace, "killed", _state_body(states.StateType.CRASHED, "oom"))
    for hooks in ({"runner": "Job", "job": "killed-hooks", "outcome": "Pending"},
                  {"outcome": "Running"}, {"outcome": "Failed", "message": "hook raised"}):
        written = _patch_status(api, namespace, "killed", {"status": {"hooks": hooks}})
        assert written.status_code == 200, written.text
    for hooks in ({"outcome": "Succeeded"}, {"message": "rewritten"}):
        refused = _patch_status(api, namespace, "killed", {"status": {"hooks": hooks}})
        assert refused.status_code == 422, refused.text
        assert "status is frozen once the run is final" in refused.json()["message"]


def test_the_hook_claim_and_declared_hooks_never_change_after_the_end(api, namespace) -> None:
    _create(api, namespace, "claimed")
    running = _state_body(states.StateType.RUNNING, "")
    running["status"]["hooks"] = {"declared": ["on_crashed"], "runner": "Engine"}
    _patch_status(api, namespace, "claimed", running)
    _patch_status(api, namespace, "claimed", _state_body(states.StateType.CRASHED, "oom"))
    for hooks in ({"runner": "Job"}, {"declared": ["on_crashed", "on_cancellation"]}):
        refused = _patch_status(api, namespace, "claimed", {"status": {"hooks": hooks}})
        assert refused.status_code == 422, refused.text


def test_state_cannot_be_removed(api, namespace) -> None:
    _create(api, namespace, "keep")
    _patch_status(api, namespace, "keep", _state_body(states.StateType.RUNNING, ""))
    for body in ({"status": {"state": None}}, {"status": None}):
        refused = _patch_status(api, namespace, "keep", body)
        assert refused.status_code == 422, refused.text
        assert "status.state cannot be removed once set" in refused.json()["message"]


def test_stale_resource_version_is_a_conflict(api, namespace) -> None:
    created = _create(api, namespace, "race")
    stale = created["metadata"]["resourceVersion"]
    _patch_status(api, namespace, "race", _state_body(states.StateType.PENDING, "operator"))
    patch = flowruns.status_patch(None, states.Running(), generation=1, now=T0)
    conflict = _patch_status(api, namespace, "race", flowruns.patch_body(stale, patch))
    assert conflict.status_code == 409, conflict.text


def test_a_full_status_from_status_patch_round_trips(api, namespace, cluster) -> None:
    flowrun = _create(api, namespace, "full")
    status: dict = {}
    steps = [(states.Scheduled(), {}), (states.Pending(), {"jobName": "full-1", "attempt": 1}),
             (states.Running(), {"podName": "full-1-x"}),
             (states.Completed("all good"), {"result": {"value": {"n": 1}}, "exitCode": 0})]
    for state, fields in steps:
        patch = flowruns.status_patch(status, state, now=datetime.now(timezone.utc),
                                      generation=flowrun["metadata"]["generation"], **fields)
        response = _patch_status(api, namespace, "full", flowruns.patch_body(
            flowrun["metadata"]["resourceVersion"], patch))
        assert response.status_code == 200, response.text
        flowrun = response.json()
        status = flowrun["status"]
        # Nothing was pruned or rewritten by the schema.
        for key, value in patch.items():
            assert status[key] == value, key
    assert [h["name"] for h in status["stateHistory"]] == [
        "Scheduled", "Pending", "Running", "Completed"]
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Succeeded", "--timeout=10s",
                    "flowrun/full")
    wide = cluster.kubectl("get", "fr", "full", "-n", namespace, "-o", "wide").stdout
    assert wide.split("\n")[0].split() == ["NAME", "STATE", "DEPLOYMENT", "AGE", "DURATION",
                                          "ATTEMPT", "REASON", "MESSAGE"]
    assert "Completed" in wide and "all good" in wide


def _columns(cluster, namespace: str, *flags: str) -> dict[str, dict[str, str]]:
    """`kubectl get fr` as {run name: {column: cell}}, cut at the header's column starts
    (an empty cell is blank, not missing)."""
    header, *rows = cluster.kubectl("get", "fr", "-n", namespace, *flags).stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    table = {}
    for row in rows:
        cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
        table[cells[0]] = dict(zip(names, cells))
    return table


def test_kubectl_get_shows_what_ran_the_attempt_and_the_reason(api, cluster, namespace) -> None:
    _create(api, namespace, "adhoc")
    _create(api, namespace, "deployed", {"deploymentName": "nightly-etl"})
    crash = flowruns.status_patch(None, states.Crashed("OOM"), generation=1, now=T0,
                                  attempt=2, reason="OOMKilled")
    assert _patch_status(api, namespace, "adhoc", {"status": crash}).status_code == 200
    narrow = _columns(cluster, namespace)
    assert list(narrow["adhoc"]) == ["NAME", "STATE", "DEPLOYMENT", "AGE", "DURATION"]
    assert narrow["adhoc"]["DEPLOYMENT"] == "flows/f.py:f"  # an ad-hoc run: its entrypoint
    assert narrow["deployed"]["DEPLOYMENT"] == "nightly-etl"
    wide = _columns(cluster, namespace, "-o", "wide")["adhoc"]
    assert (wide["STATE"], wide["ATTEMPT"], wide["REASON"]) == ("Crashed", "2", "OOMKilled")


def _apply(cluster, manifest: str, namespace: str) -> subprocess.CompletedProcess:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)


@pytest.mark.parametrize("kind, spec", [
    ("FlowRun", "{entrypoint: 'flows/f.py', image: 'i'}"),
    ("Deployment", "{entrypoint: 'my.module', image: 'i'}"),
])
def test_a_bad_entrypoint_is_refused_with_the_fix(api, cluster, namespace, kind, spec) -> None:
    result = _apply(cluster, f"apiVersion: flowpod.io/v1alpha1\nkind: {kind}\n"
                             f"metadata: {{name: bad}}\nspec: {spec}\n", namespace)
    assert result.returncode != 0
    assert "spec.entrypoint must be 'path/to/file.py:flow_function' or " \
           "'package.module:flow_function'" in result.stderr


@pytest.mark.parametrize("spec", [
    "{deploymentName: d, entrypoint: 'f.py:f', image: i}",
    "{entrypoint: 'f.py:f'}",
    "{parameters: {x: 1}}",
])
def test_a_flowrun_needs_exactly_one_form(api, cluster, namespace, spec) -> None:
    result = _apply(cluster, "apiVersion: flowpod.io/v1alpha1\nkind: FlowRun\n"
                             f"metadata: {{name: bad}}\nspec: {spec}\n", namespace)
    assert result.returncode != 0
    assert "set exactly one of: spec.deploymentName" in result.stderr


def test_defaults_are_applied_by_the_api_server(api, cluster, namespace) -> None:
    result = _apply(cluster, "apiVersion: flowpod.io/v1alpha1\nkind: Deployment\n"
                             "metadata: {name: hello}\n"
                             "spec: {entrypoint: 'examples/hello/flow.py:hello', image: i}\n",
                    namespace)
    assert result.returncode == 0, result.stderr
    spec = api.get(f"/apis/flowpod.io/v1alpha1/namespaces/{namespace}/deployments/hello"
                   ).json()["spec"]
    assert (spec["cancellationGracePeriodSeconds"], spec["pendingTimeoutSeconds"],
            spec["retries"]) == (30, 300, 0)
    created = _create(api, namespace, "by-deployment", {"deploymentName": "hello"})
    assert created["spec"]["cancel"] is False
