"""Hermetic tests of flowpod.run_deployment (flowpod.deployment_runs): child names, the
child FlowRun a flow creates, re-attaching on 409, the watch (reconnects, 410 Gone),
timeouts, and results -- a flow run in process with the in-pod reporter, against
tests/fakeapi.py."""

from __future__ import annotations

import asyncio
import json

import anyio
import httpx
import pytest

import flowpod
from flowpod import contract, deployment_runs, engine, states
from flowpod.engine import _kubeapi, _kubereporter

from fakeapi import FakeApi, run_object, status_of

NS, PARENT, UID = "team", "nightly", "uid-nightly"


def _api() -> FakeApi:
    api = FakeApi()
    parent = run_object(NS, PARENT, status_of("PENDING", "Pending"))
    parent["metadata"]["uid"] = UID
    api.add(parent)
    return api


def _in_pod(api: FakeApi, flow: flowpod.Flow) -> states.State:
    """Run `flow` as the pod of FlowRun PARENT would (its reporter, its uid as run id)."""
    connection = _kubeapi.Connection.explicit("https://api.test", token="t")
    client = _kubeapi.FlowRunClient(connection, NS, PARENT, transport=api.transport())
    reporter = _kubereporter.KubeReporter(client)

    async def main() -> states.State:
        try:
            return await engine.run_flow_run(flow, {}, reporter, flow_run_id=UID,
                                             handle_sigterm=False)
        finally:
            await reporter.aclose()

    return anyio.run(main)


def _child(name: str, status: dict | None = None, owner: str = UID) -> dict:
    obj = run_object(NS, name, status, deploymentName="add")
    obj["metadata"]["ownerReferences"] = [{"apiVersion": contract.API_VERSION,
                                           "kind": "FlowRun", "name": PARENT, "uid": owner}]
    return obj


def _completed(value: object) -> dict:
    return status_of("COMPLETED", "Completed",
                     result={"value": value, "reference": None, "notKept": None})


def _posts(api: FakeApi) -> list[dict]:
    return [json.loads(r.content) for r in api.requests
            if r.method == "POST" and r.url.path.endswith("/flowruns")]


def _watches(api: FakeApi) -> list[httpx.Request]:
    return [r for r in api.requests if r.url.params.get("watch") == "1"]


# -- names -----------------------------------------------------------------------------------
def test_child_names_are_deterministic_and_valid() -> None:
    name = deployment_runs.child_name
    assert name("add", parent="nightly", call=3) == "nightly-add-3"
    assert name("add", parent="nightly", call=3, idempotency_key="k") == name(
        "add", parent="other", idempotency_key="k")
    assert name("add", parent="nightly", idempotency_key="k").startswith("add-")
    assert name("add", parent=None, call=None) is None  # a generated name
    long = name("add", parent="p" * 250, call=12)
    assert long == name("add", parent="p" * 250, call=12) and len(long) == 253
    assert long != name("add", parent="p" * 250, call=13)


def test_arguments_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="not 'flow/deployment'"):
        flowpod.run_deployment("my-flow/add")
    with pytest.raises(ValueError, match=r"timeout=-1 must be >= 0"):
        flowpod.run_deployment("add", timeout=-1)
    with pytest.raises(ValueError, match=r"parameters=...\) must be JSON"):
        flowpod.run_deployment("add", {"x": object()})


# -- creating children -----------------------------------------------------------------------
def test_an_async_flow_starts_children_together_named_by_call_and_owned() -> None:
    api = _api()

    @flowpod.flow
    async def fan_out() -> list[str]:
        runs = [flowpod.arun_deployment("add", {"x": i}, timeout=0) for i in range(3)]
        done = await asyncio.gather(*reversed(runs))  # awaited in another order
        return [s.flow_run_name + ":" + s.name for s in reversed(done)]

    final = _in_pod(api, fan_out)
    assert final.result() == [f"{PARENT}-add-{i}:Scheduled" for i in range(3)]
    bodies = sorted(_posts(api), key=lambda b: b["metadata"]["name"])
    for i, body in enumerate(bodies):
        assert body["metadata"]["name"] == f"{PARENT}-add-{i}"
        assert body["spec"] == {"deploymentName": "add", "parameters": {"x": i}}
        assert body["metadata"]["labels"] == {contract.LABEL_DEPLOYMENT: "add",
                                              contract.LABEL_PARENT_FLOW_RUN: PARENT}
        assert body["metadata"]["ownerReferences"] == [{
            "apiVersion": contract.API_VERSION, "kind": "FlowRun", "name": PARENT,
            "uid": UID}]
    assert _watches(api) == []  # timeout=0: no waiting


def test_a_sync_flow_blocks_and_gets_the_childs_result() -> None:
    api = _api()
    api.watch_script[f"{PARENT}-add-0"] = [status_of("RUNNING", "Running"), _completed(42)]

    @flowpod.flow
    def one() -> int:
        state = flowpod.run_deployment("add", {"x": 41})
        assert state.is_completed()
        return state.result()

    assert _in_pod(api, one).result() == 42
    watch, = _watches(api)
    assert watch.url.params["fieldSelector"] == f"metadata.name={PARENT}-add-0"
    assert watch.url.params["resourceVersion"]  # from the create's answer


def test_a_rerun_attaches_to_the_existing_child_instead_of_creating_another() -> None:
    api = _api()
    api.add(_child(f"{PARENT}-add-0", _completed(7)))

    @flowpod.flow
    def again() -> int:
        return flowpod.run_deployment("add", {"x": 6}).result()

    assert _in_pod(api, again).result() == 7
    assert len(_posts(api)) == 1 and _watches(api) == []  # 409, read it: already final
    assert len([o for o in api.items("flowruns", NS)]) == 2


def test_a_child_name_taken_by_another_runs_child_is_not_adopted() -> None:
    api = _api()
    api.add(_child(f"{PARENT}-add-0", _completed(7), owner="uid-someone-else"))

    @flowpod.flow
    def again() -> int:
        return flowpod.run_deployment("add").result()

    with pytest.raises(RuntimeError, match="belongs to another run"):
        _in_pod(api, again).result()


def test_a_failed_child_is_returned_as_its_final_state() -> None:
    api = _api()
    api.add(_child(f"{PARENT}-add-0", status_of("FAILED", "Failed", "boom")))

    @flowpod.flow
    def parent() -> str:
        state = flowpod.run_deployment("add")
        with pytest.raises(RuntimeError, match="Run ended Failed: boom"):
            state.result()
        return state.name

    assert _in_pod(api, parent).result() == "Failed"


def test_a_result_that_was_not_kept_says_why() -> None:
    api = _api()
    api.add(_child(f"{PARENT}-add-0", status_of("COMPLETED", "Completed", result={
        "value": None, "reference": None, "notKept": "too large"})))

    @flowpod.flow
    def parent() -> None:
        flowpod.run_deployment("add").result()

    with pytest.raises(RuntimeError, match="without keeping its result: too large"):
        _in_pod(api, parent).result()


# -- the watch -------------------------------------------------------------------------------
def test_the_watch_reconnects_when_it_ends_and_after_410_gone() -> None:
    api = _api()
    child = f"{PARENT}-add-0"
    api.watch_script[child] = [status_of("RUNNING", "Running")]
    gone = httpx.Response(200, text=json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}) + "\n")
    watches = []

    def expire_second_watch(request: httpx.Request) -> httpx.Response | None:
        if request.url.params.get("watch") == "1":
            watches.append(request)
            if len(watches) == 2:
                api.watch_script[child] = [_completed(3)]  # for the watch after the re-read
                return gone
        return None

    api.failures = [expire_second_watch] * 20  # one is used up by each request

    @flowpod.flow
    def parent() -> int:
        return flowpod.run_deployment("add").result()

    assert _in_pod(api, parent).result() == 3
    methods = [(r.method, r.url.params.get("watch")) for r in api.requests
               if contract.flowrun_path(NS, child) in r.url.path or "watch" in r.url.params]
    # watch (ends after Running), watch (410), GET (fresh version), watch (Completed)
    assert methods == [("GET", "1"), ("GET", "1"), ("GET", None), ("GET", "1")]


def test_a_timeout_returns_the_current_state_that_is_not_final() -> None:
    api = _api()
    api.watch_script[f"{PARENT}-add-0"] = [status_of("RUNNING", "Running")]

    @flowpod.flow
    def parent() -> str:
        return flowpod.run_deployment("add", timeout=0.5).name

    # After the script the fake answers 500: the client keeps re-watching until the timeout.
    assert _in_pod(api, parent).result() == "Running"


def test_a_child_deleted_while_waited_for_is_an_error() -> None:
    api = _api()
    child = f"{PARENT}-add-0"
    deleted = json.dumps({"type": "DELETED", "object": _child(child)}) + "\n"
    api.failures = [lambda r: httpx.Response(200, text=deleted)
                    if r.url.params.get("watch") == "1" else None] * 20

    @flowpod.flow
    def parent() -> None:
        flowpod.run_deployment("add")

    with pytest.raises(RuntimeError, match="was deleted before it reached a final state"):
        _in_pod(api, parent).result()


def test_sync_call_inside_a_running_loop_outside_a_flow_points_to_the_async_form() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="await flowpod.arun_deployment"):
            flowpod.run_deployment("add")

    anyio.run(main)


def test_outside_any_flow_it_blocks_and_the_child_has_no_parent(monkeypatch) -> None:
    api = FakeApi()
    api.watch_script["add-x1y2z"] = [_completed(5)]  # the fake's generated name
    with api.serve() as url:
        async def connection(kubeconfig, context):
            assert (kubeconfig, context) == ("/k", "c")
            return _kubeapi.Connection.explicit(url), NS

        monkeypatch.setattr(deployment_runs, "_connection", connection)
        state = flowpod.run_deployment("add", {"x": 4}, kubeconfig="/k", context="c")
    assert state.result() == 5 and state.flow_run_name == "add-x1y2z"
    body, = _posts(api)
    assert body["metadata"]["generateName"] == "add-"
    assert "ownerReferences" not in body["metadata"]
    assert body["metadata"]["labels"] == {contract.LABEL_DEPLOYMENT: "add"}


def test_more_children_than_watch_slots_are_all_waited_for(monkeypatch) -> None:
    # Watches hold connections; a flow waiting for more runs than there are watch slots
    # waits for the rest as slots free.
    monkeypatch.setattr(_kubeapi, "MAX_WATCHES", 1)
    api = _api()
    for i in range(3):
        api.watch_script[f"{PARENT}-add-{i}"] = [status_of("RUNNING", "Running"),
                                                 _completed(i)]

    @flowpod.flow
    async def parent() -> int:
        runs = await asyncio.gather(*(flowpod.arun_deployment("add") for _ in range(3)))
        return sum(run.result() for run in runs)

    assert _in_pod(api, parent).result() == 3
