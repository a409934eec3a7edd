"""Two operators with leader election on the real plane: one leads through a Lease, the other
stands by, writes nothing, and takes over when the leader is SIGKILLed -- every run ends as
it should (cancelled ones too: their Cancelling is finished by the new leader), with exactly
one Job per run attempt; a stale write is refused by its resourceVersion precondition. A
graceful stop releases the Lease, so takeover is immediate; a leader that loses its Lease
exits at once, non-zero."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

import operator_harness as harness
from flowpod import contract, flowruns
from flowpod_devcluster.waiting import wait_for

pytestmark = pytest.mark.cluster

CASES = "tests/operator/flows/operator_cases.py"
LEASE = "flowpod-operator"
# Kubernetes' own 15/10/2 s: on a loaded machine the API server answers a renewal seconds
# late, and a leader that cannot renew within the deadline exits (as it must).
HA_ARGS = ("--leader-election", f"--lease-name={LEASE}", "--lease-duration=15",
           "--lease-renew-deadline=10", "--lease-retry-period=2")
RUNS = 50
CANCELLED = range(0, RUNS, 5)  # every fifth run is cancelled mid-way


@pytest.fixture
def ha_operators(cluster, flow_namespace, operator_kubeconfig, lease_priority):
    started: list[harness.OperatorProcess] = []

    def start(tag: str) -> harness.OperatorProcess:
        log = cluster.state_dir / "logs" / f"operator-{flow_namespace}-{tag}.log"
        log.unlink(missing_ok=True)
        proc = harness.OperatorProcess(operator_kubeconfig, log, (flow_namespace,),
                                       HA_ARGS).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _holder(api: harness.Api, ns: str) -> str | None:
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}")
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def _identity(proc: harness.OperatorProcess) -> str:
    for line in proc.log_text().splitlines():
        if '"message": "standing by"' in line:
            return json.loads(line)["identity"]
    raise AssertionError(f"no 'standing by' line:\n{proc.log_tail()}")


def _healthz(proc: harness.OperatorProcess) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{proc.health_port}/healthz", timeout=5)


def _jobs_by_run(api: harness.Api, ns: str) -> dict[str, list[str]]:
    by_run: dict[str, list[str]] = {}
    for job in api.jobs(ns):
        by_run.setdefault(job["metadata"]["labels"][contract.LABEL_FLOW_RUN], []).append(
            job["metadata"]["name"])
    return {run: sorted(names) for run, names in by_run.items()}


def test_standby_takes_over_a_killed_leader(ha_operators, api, flow_namespace):
    ns = flow_namespace
    keep = {"successfulRunsHistoryLimit": RUNS, "failedRunsHistoryLimit": RUNS}
    api.create_deployment(ns, "sleeper", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 6}, **keep)
    # Cancelled runs ignore SIGTERM, so they stay Cancelling for the grace period: long
    # enough for the leader to die in between and the new one to finish the cancel.
    api.create_deployment(ns, "stubborn", entrypoint=f"{CASES}:ignores_sigterm",
                          parameters={"seconds": 600}, cancellationGracePeriodSeconds=20,
                          **keep)
    first = ha_operators("a")
    wait_for("the first operator to lead", first.log_text, lambda t: '"message": "leading"' in t)
    second = ha_operators("b")
    # A standby is healthy and says so; it holds nothing and writes nothing.
    response = _healthz(second)
    assert response.status_code == 200 and response.text.startswith("standby: "), response.text
    assert _holder(api, ns) == _identity(first)

    names = [f"run-{i:02d}" for i in range(RUNS)]
    for i, name in enumerate(names):
        api.create_flowrun(ns, name, deploymentName="stubborn" if i in CANCELLED else "sleeper")
    for i in CANCELLED:  # each once it runs: mid-way
        wait_for(f"{names[i]} to run", lambda n=names[i]: harness.state_type(api.flowrun(ns, n)),
                 lambda state: state == "RUNNING", timeout=90)
        api.cancel(ns, names[i])
    cancelling = wait_for(
        "a run in Cancelling", lambda: [api.flowrun(ns, names[i]) for i in CANCELLED],
        lambda runs: any(harness.state_type(run) == "CANCELLING" for run in runs), timeout=60)
    # The old leader's last view of a run the new leader must finish.
    seen_by_first = next(run for run in cancelling if harness.state_type(run) == "CANCELLING")

    first.kill()
    left_cancelling = [names[i] for i in CANCELLED
                       if harness.state_type(api.flowrun(ns, names[i])) == "CANCELLING"]
    assert left_cancelling
    wait_for("the standby to take over", second.log_text,
             lambda t: '"message": "leading"' in t, timeout=60)
    assert _holder(api, ns) == _identity(second)
    wait_for("the new leader ready", lambda: _healthz(second).text, lambda t: t == "ok\n")

    for i, name in enumerate(names):
        flowrun = api.wait_final(ns, name, timeout=120,
                                 explain=lambda n=name: second.log_tail(needle=f'"{n}"'))
        expected = "CANCELLED" if i in CANCELLED else "COMPLETED"
        assert harness.state_type(flowrun) == expected, (name, flowrun["status"])
    # The new leader finished the cancellations the old one had begun.
    finished = [json.loads(line)["flowRun"] for line in second.log_text().splitlines()
                if '"state": "Cancelled"' in line]
    assert set(left_cancelling) <= set(finished), (left_cancelling, finished)
    # Exactly one Job per run attempt: names are deterministic and nobody made a second.
    assert _jobs_by_run(api, ns) == {name: [f"{name}-1"] for name in names}
    assert "created Job" not in second.log_text().split('"message": "leading"')[0]
    # A write from the old leader, had it still been alive, would carry the resourceVersion
    # it last saw; the API server refuses it instead of letting it overwrite the new one's.
    stale = flowruns.patch_body(seen_by_first["metadata"]["resourceVersion"],
                                {"state": seen_by_first["status"]["state"]})
    stale_path = contract.flowrun_path(ns, seen_by_first["metadata"]["name"]) + "/status"
    response = api.request("PATCH", stale_path, stale, contract.MERGE_PATCH)
    assert response.status_code == 409, response.text
    assert second.stop() == 0
    assert '"level": "ERROR"' not in second.log_text(), second.log_tail(needle="ERROR")


def test_graceful_stop_releases_the_lease(ha_operators, api, flow_namespace):
    ns = flow_namespace
    api.create_deployment(ns, "quick", entrypoint=f"{CASES}:hello")
    first = ha_operators("c")
    wait_for("the first operator to hold the Lease", lambda: _holder(api, ns),
             lambda holder: holder == _identity(first))
    second = ha_operators("d")
    assert first.stop() == 0
    assert '"message": "released the Lease"' in first.log_text(), first.log_tail()
    # Released, not expired: the standby leads at its next retry.
    wait_for("the standby to hold the Lease", lambda: _holder(api, ns),
             lambda holder: holder == _identity(second))
    api.create_flowrun(ns, "after-handover", deploymentName="quick")
    flowrun = api.wait_final(ns, "after-handover", timeout=60,
                             explain=lambda: second.log_tail(needle='"after-handover"'))
    assert harness.state_type(flowrun) == "COMPLETED"
    assert second.stop() == 0


def test_a_leader_that_loses_the_lease_exits_at_once(ha_operators, api, flow_namespace):
    ns = flow_namespace
    leader = ha_operators("e")
    wait_for("the operator to hold the Lease", lambda: _holder(api, ns),
             lambda holder: holder == _identity(leader))
    path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}"
    lease = api.get(path)
    # Another holder with a fresh renewTime: the leader can no longer renew.
    lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=600,
                         renewTime=contract.format_time_exact(datetime.now(timezone.utc)))
    api.request("PUT", path, lease).raise_for_status()
    assert leader.proc is not None
    leader.proc.wait(60)
    assert leader.proc.returncode == 1, leader.log_tail()
    assert '"message": "stopped leading: ' in leader.log_text(), leader.log_tail()
    assert _holder(api, ns) == "intruder"
    api.request("DELETE", path).raise_for_status()
