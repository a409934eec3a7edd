"""With shards, a cancelled parent cancels its children on another shard too: their runs
never reach its Index, so it lists them from the API (the shared fake API server over
loopback, the real client, Index, decision and actuator). The same on the real plane with
two shards: tests/operator/test_operator_sharding.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timezone

import pytest
from kubernetes_asyncio import client

from fakeapi import FakeApi
from flowpod import contract
from flowpod_operator._decisions.sharding import Shard, shard_of
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.loop import Reconciler


def _child(k8s, name: str, parent: dict) -> dict:
    child = k8s.flowrun(name, deployment="elsewhere", state=k8s.state("RUNNING"), attempt=1)
    child["metadata"]["ownerReferences"] = [{
        "apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
        "name": parent["metadata"]["name"], "uid": parent["metadata"]["uid"]}]
    child["metadata"]["labels"][contract.LABEL_PARENT_FLOW_RUN] = parent["metadata"]["name"]
    return child


@pytest.mark.parametrize("shards", [1, 2])
def test_a_cancelled_parent_cancels_its_children_on_another_shard_once(k8s, shards):
    parent = k8s.flowrun("run", cancel=True)  # never started: Cancelled at once
    kid, done = _child(k8s, "kid", parent), _child(k8s, "done", parent)
    done["status"]["state"] = k8s.state("COMPLETED")
    mine = shard_of("ns", "hello", shards)
    assert shards == 1 or shard_of("ns", "elsewhere", shards) != mine
    api = FakeApi(created_at=contract.format_time(k8s.now, fraction=False))
    for body in (parent, kid, done):
        api.add(copy.deepcopy(body))

    async def scenario(url: str) -> None:
        async with client.ApiClient(configuration=client.Configuration(host=url)) as http:
            kube = KubeApi(http)
            index = Index()
            index.put_deployment(k8s.deployment())
            reconciler = Reconciler(index, kube, EventRecorder(lambda e: None, clock=_now),
                                    clock=lambda: k8s.now, shard=Shard(mine, shards))
            for body in (parent, kid, done):
                reconciler.intake.on_flowrun("ADDED", copy.deepcopy(body))
            # The children are another shard's: this one's Index never holds them.
            assert (index.flowrun(("ns", "kid")) is None) == (shards == 2)
            await reconciler.reconcile(("ns", "run"))

    with api.serve() as url:
        asyncio.run(scenario(url))
    cancels = [r for r in api.requests if r.method == "PATCH"
               and r.url.path == contract.flowrun_path("ns", "kid")]
    assert len(cancels) == 1
    assert (api.get("flowruns", "ns", "kid") or {})["spec"]["cancel"] is True
    assert not (api.get("flowruns", "ns", "done") or {})["spec"].get("cancel")
    assert api.get("flowruns", "ns", "run")["status"]["state"]["type"] == "CANCELLED"


def _now() -> datetime:
    return datetime.now(timezone.utc)
