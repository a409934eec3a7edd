"""Concurrency limits on the real plane, with the engine really running in pods.

`spec.concurrencyLimit` with Enqueue (runs start one after another, never two at once) and
CancelNew (the extras end Cancelled), a slot freed by a run Crashed by its deleted pod and
by a deleted FlowRun, and the operator-wide `--max-concurrent-runs` (a second operator
watching a namespace of its own). Pods and states are sampled every 200 ms."""

from __future__ import annotations

import time
import uuid

import pytest

import operator_harness as harness
from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
HOLDING = {"PENDING", "RUNNING", "CANCELLING", "PAUSED"}
WAIT = "AwaitingConcurrencySlot"


def _state(flowrun: dict) -> dict:
    return (flowrun.get("status") or {}).get("state") or {}


def _runs(api, ns: str) -> list[dict]:
    return api.get(contract.flowrun_path(ns))["items"]


def _sample_until_final(api, ns: str, names: list[str], timeout: float = 90) -> list[dict]:
    """Sample the runs and their pods every 200 ms until all are final: per sample, the
    runs holding a slot and the live pods of runs not final yet (a run's slot is freed when
    it is final, which the engine writes just before its process exits)."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Pods first: a pod counted belongs to a run still unfinished after it was seen.
        pods = [p for p in api.pods(ns) if p["status"].get("phase") in (
            "Pending", "Running") and not p["metadata"].get("deletionTimestamp")]
        runs = {r["metadata"]["name"]: r for r in _runs(api, ns)
                if r["metadata"]["name"] in names}
        unfinished = {n for n, r in runs.items() if _state(r).get("type") not in harness.FINAL}
        pods = [p for p in pods if p["metadata"]["labels"].get(contract.LABEL_FLOW_RUN)
                in unfinished]
        samples.append({"holding": sorted(n for n, r in runs.items()
                                          if _state(r).get("type") in HOLDING),
                        "pods": len(pods)})
        if len(runs) == len(names) and all(_state(r).get("type") in harness.FINAL
                                           for r in runs.values()):
            return samples
        time.sleep(0.2)
    raise AssertionError(f"runs {names} not final in {timeout}s; last sample {samples[-1:]}")


def _history(flowrun: dict) -> list[str]:
    return [entry["name"] for entry in flowrun["status"]["stateHistory"]]


def test_enqueue_starts_runs_one_after_another(api, flow_namespace, operator_proc):
    ns = flow_namespace
    api.create_deployment(ns, "one-at-a-time", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 2}, concurrencyLimit=1)
    names = ["enq-1", "enq-2", "enq-3"]
    for name in names:
        api.create_flowrun(ns, name, deploymentName="one-at-a-time")
    samples = _sample_until_final(api, ns, names)
    assert max(len(s["holding"]) for s in samples) == 1, samples
    assert max(s["pods"] for s in samples) <= 1, samples
    runs = {n: api.flowrun(ns, n) for n in names}
    assert all(_state(r)["type"] == "COMPLETED" for r in runs.values())
    starts = [r["status"]["startTime"] for r in runs.values()]
    ends = [r["status"]["endTime"] for r in runs.values()]
    assert starts == sorted(starts) and starts[1] >= ends[0] and starts[2] >= ends[1]
    message = "waiting for a concurrency slot: 1/1 runs of deployment one-at-a-time active"
    for name in names[1:]:
        assert _history(runs[name])[:2] == [WAIT, "Pending"]
        assert runs[name]["status"]["stateHistory"][0]["message"] == message
        assert any(e.get("message") == message for e in api.events(ns, name))


def test_cancel_new_cancels_the_extras(api, flow_namespace, operator_proc):
    ns = flow_namespace
    api.create_deployment(ns, "no-overlap", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 3}, concurrencyLimit=1,
                          collisionStrategy="CancelNew")
    names = ["cn-1", "cn-2", "cn-3"]
    for name in names:
        api.create_flowrun(ns, name, deploymentName="no-overlap")
    for name in names:
        api.wait_final(ns, name, explain=lambda: operator_proc.log_tail())
    first, *extras = (api.flowrun(ns, n) for n in names)
    assert _state(first)["type"] == "COMPLETED"
    for run in extras:
        assert _state(run)["type"] == "CANCELLED"
        assert _state(run)["message"] == (
            "Cancelled: concurrency limit reached (1/1 runs of deployment no-overlap active; "
            "spec.concurrencyLimit 1 with collisionStrategy CancelNew)")
        assert api.jobs(ns, f"{contract.LABEL_FLOW_RUN}={run['metadata']['name']}") == []


def _started(api, ns: str, name: str, timeout: float, log) -> dict:
    return api.wait_flowrun(ns, name, lambda f: _state(f).get("type") in HOLDING,
                            what="a started run", timeout=timeout, explain=log)


def _awaiting(api, ns: str, name: str, log) -> dict:
    return api.wait_flowrun(ns, name, lambda f: _state(f).get("name") == WAIT,
                            what=WAIT, timeout=30, explain=log)


def test_a_crashed_run_frees_its_slot(api, flow_namespace, operator_proc):
    ns = flow_namespace
    api.create_deployment(ns, "crashes", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 60}, concurrencyLimit=1)
    api.create_flowrun(ns, "crash-holder", deploymentName="crashes")
    api.create_flowrun(ns, "crash-next", deploymentName="crashes")
    api.wait_flowrun(ns, "crash-holder", lambda f: _state(f).get("type") == "RUNNING",
                     what="Running", timeout=30, explain=operator_proc.log_tail)
    _awaiting(api, ns, "crash-next", operator_proc.log_tail)
    (pod,) = api.pods(ns, f"{contract.LABEL_FLOW_RUN}=crash-holder")
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}",
                gracePeriodSeconds=0).raise_for_status()
    assert _state(api.wait_final(ns, "crash-holder"))["type"] == "CRASHED"
    _started(api, ns, "crash-next", 10, operator_proc.log_tail)
    api.cancel(ns, "crash-next")


def test_a_deleted_run_frees_its_slot(api, flow_namespace, operator_proc):
    ns = flow_namespace
    api.create_deployment(ns, "deleted", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 60}, concurrencyLimit=1)
    api.create_flowrun(ns, "del-holder", deploymentName="deleted")
    api.create_flowrun(ns, "del-next", deploymentName="deleted")
    _started(api, ns, "del-holder", 30, operator_proc.log_tail)
    _awaiting(api, ns, "del-next", operator_proc.log_tail)
    api.request("DELETE", contract.flowrun_path(ns, "del-holder")).raise_for_status()
    _started(api, ns, "del-next", 10, operator_proc.log_tail)
    api.cancel(ns, "del-next")


@pytest.fixture(scope="module")
def limited_operator(cluster):
    """A second namespace and an operator with --max-concurrent-runs 2 watching it."""
    ns = f"limits-global-{uuid.uuid4().hex[:5]}"
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, ns)
    logs = cluster.state_dir / "logs"
    kubeconfig = harness.operator_kubeconfig(cluster, ns, logs / f"operator-{ns}.kubeconfig")
    proc = harness.OperatorProcess(kubeconfig, logs / f"operator-{ns}.log", (ns,),
                                   ("--max-concurrent-runs", "2")).start()
    yield ns, proc
    code = proc.stop()
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert code == 0, proc.log_tail()
    assert '"level": "ERROR"' not in proc.log_text(), proc.log_tail(needle="ERROR")


def test_operator_wide_limit(api, limited_operator):
    ns, proc = limited_operator
    api.create_deployment(ns, "left", entrypoint=f"{CASES}:sleeps", parameters={"seconds": 2})
    api.create_deployment(ns, "right", entrypoint=f"{CASES}:sleeps", parameters={"seconds": 2})
    names = ["g-1", "g-2", "g-3", "g-4", "g-5"]
    for n, name in enumerate(names):
        api.create_flowrun(ns, name, deploymentName="left" if n % 2 else "right")
    samples = _sample_until_final(api, ns, names)
    assert max(len(s["holding"]) for s in samples) == 2, samples
    assert max(s["pods"] for s in samples) <= 2, samples
    runs = [api.flowrun(ns, n) for n in names]
    assert all(_state(r)["type"] == "COMPLETED" for r in runs), proc.log_tail()
    waited = [r for r in runs if WAIT in _history(r)]
    assert waited, "with 5 runs and 2 slots, some must have waited"
    assert all(r["status"]["stateHistory"][0]["message"] == "waiting for a concurrency slot: "
               "2/2 runs active operator-wide (--max-concurrent-runs)" for r in waited)


def test_slots_survive_an_operator_restart(api, cluster):
    """The slots are recounted from the listing after a restart: a waiting run stays held
    back by a run that still runs, and starts once that run is deleted (a deletion the
    stopped operator never saw)."""
    ns = f"limits-restart-{uuid.uuid4().hex[:5]}"
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, ns)
    logs = cluster.state_dir / "logs"
    kubeconfig = harness.operator_kubeconfig(cluster, ns, logs / f"operator-{ns}.kubeconfig")

    def operator() -> harness.OperatorProcess:
        return harness.OperatorProcess(kubeconfig, logs / f"operator-{ns}.log", (ns,)).start()

    proc = operator()
    try:
        api.create_deployment(ns, "single", entrypoint=f"{CASES}:sleeps",
                              parameters={"seconds": 60}, concurrencyLimit=1)
        for name in ("r-holder", "r-second", "r-third"):
            api.create_flowrun(ns, name, deploymentName="single")
        _started(api, ns, "r-holder", 30, proc.log_tail)
        _awaiting(api, ns, "r-third", proc.log_tail)
        proc.kill()
        api.request("DELETE", contract.flowrun_path(ns, "r-holder")).raise_for_status()
        proc = operator()
        _started(api, ns, "r-second", 15, proc.log_tail)
        time.sleep(2)  # time enough for a wrong start of the third
        assert _state(api.flowrun(ns, "r-third")).get("name") == WAIT
        api.cancel(ns, "r-second")
        _started(api, ns, "r-third", 30, proc.log_tail)
        api.cancel(ns, "r-third")
        api.wait_final(ns, "r-third", explain=proc.log_tail)
    finally:
        code = proc.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert code == 0, proc.log_tail()
