"""Two operator shards on the real plane (`--shards 2 --shard 0|1`, each leading its own
Lease): runs of several Deployments are each handled by exactly the shard their Deployment
hashes to -- one shard's log has its Job, the other's nothing -- and all complete; and a
parent cancelled on one shard cancels its children on the other."""

from __future__ import annotations

import json

import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for
from flowpod_operator._decisions.sharding import shard_of

pytestmark = pytest.mark.cluster

CASES = "tests/operator/flows/operator_cases.py"
FANOUT = "tests/operator/flows/fanout_cases.py"
RUNS_PER_DEPLOYMENT = 5


def _deployments(namespace: str) -> list[str]:
    """Four Deployment names, both shards owning at least one (the hash decides)."""
    names = [f"etl-{n}" for n in range(4)]
    n = 4
    while {shard_of(namespace, name, 2) for name in names} != {0, 1}:
        names[-1], n = f"etl-{n}", n + 1
    return names


def _jobs_created(proc: harness.OperatorProcess) -> list[str]:
    return [json.loads(line)["flowRun"] for line in proc.log_text().splitlines()
            if '"message": "created Job"' in line]


def _start_shards(cluster, api, ns: str, kubeconfig, shards: list, tag: str) -> None:
    """Two shards with leader election, appended to `shards` as they start; each leads."""
    for index in (0, 1):
        log = cluster.state_dir / "logs" / f"operator-{ns}{tag}-shard-{index}.log"
        shards.append(harness.OperatorProcess(
            kubeconfig, log, (ns,),
            ("--shards", "2", "--shard", str(index), "--leader-election")).start())
    for index, proc in enumerate(shards):
        wait_for(f"shard {index} to lead", proc.log_text,
                 lambda text: '"message": "leading"' in text)
        lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/"
                        f"flowpod-operator-shard-{index}")
        assert lease is not None and lease["spec"]["holderIdentity"]


def test_each_run_is_handled_by_exactly_its_shard(cluster, api, flow_namespace,
                                                   operator_kubeconfig, lease_priority):
    ns = flow_namespace
    shards: list[harness.OperatorProcess] = []
    try:
        _start_shards(cluster, api, ns, operator_kubeconfig, shards, "")
        owner: dict[str, int] = {}
        for deployment in _deployments(ns):
            api.create_deployment(ns, deployment, entrypoint=f"{CASES}:hello")
            for n in range(RUNS_PER_DEPLOYMENT):
                name = f"{deployment}-run-{n}"
                api.create_flowrun(ns, name, deploymentName=deployment)
                owner[name] = shard_of(ns, deployment, 2)
        for name, shard in owner.items():
            flowrun = api.wait_final(ns, name, timeout=120,
                                     explain=lambda n=name, s=shard: shards[s].log_tail(
                                         needle=f'"{n}"'))
            assert harness.state_type(flowrun) == "COMPLETED", (name, flowrun["status"])
        created = [_jobs_created(proc) for proc in shards]
        for index in (0, 1):
            assert sorted(created[index]) == sorted(
                name for name, shard in owner.items() if shard == index)
            others = shards[1 - index].log_text()
            assert not [name for name, shard in owner.items()
                        if shard == index and f'"{name}"' in others]
        for index, proc in enumerate(shards):
            assert proc.stop() == 0
            assert '"level": "ERROR"' not in proc.log_text(), proc.log_tail(needle="ERROR")
    finally:
        for proc in shards:
            proc.stop()


def test_a_cancelled_parent_cancels_its_children_on_the_other_shard(
        cluster, api, flow_namespace, operator_kubeconfig, lease_priority):
    """A child started by run_deployment belongs to the shard of its own Deployment; the
    parent's shard lists it from the API and cancels it with its parent."""
    ns = flow_namespace
    children_shard = shard_of(ns, "sleeper", 2)
    parents = next(name for name in (f"parents-{n}" for n in range(64))
                   if shard_of(ns, name, 2) != children_shard)
    shards: list[harness.OperatorProcess] = []
    try:
        _start_shards(cluster, api, ns, operator_kubeconfig, shards, "-children")
        api.create_deployment(ns, "sleeper", entrypoint=f"{FANOUT}:sleeps",
                              cancellationGracePeriodSeconds=2)
        api.create_deployment(ns, parents, entrypoint=f"{FANOUT}:fan_out_sleepers",
                              cancellationGracePeriodSeconds=2)
        api.create_flowrun(ns, "waits", deploymentName=parents, parameters={"n": 2})
        selector = f"{contract.LABEL_PARENT_FLOW_RUN}=waits"
        children = wait_for(
            "2 children Running",
            lambda: api.get(contract.flowrun_path(ns), labelSelector=selector)["items"],
            lambda kids: len(kids) == 2 and all(
                harness.state_type(k) == "RUNNING" for k in kids), timeout=120)
        api.cancel(ns, "waits")
        parent = api.wait_final(ns, "waits", timeout=90)
        assert harness.state_type(parent) == "CANCELLED"
        for child in children:
            name = child["metadata"]["name"]
            final = api.wait_final(ns, name, timeout=90, explain=lambda n=name: shards[
                children_shard].log_tail(needle=f'"{n}"'))
            assert final["spec"]["cancel"] is True
            assert harness.state_type(final) == "CANCELLED", final["status"]
            # Cancelled by the parent's shard, through the API: it never held the child.
            assert f'"child": "{name}"' in shards[1 - children_shard].log_text()
    finally:
        for proc in shards:
            proc.stop()
