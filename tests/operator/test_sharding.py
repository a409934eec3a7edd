"""Sharding without a cluster: the stable hash, what a shard owns (a Deployment with all its
runs, Jobs and Pods; a run without a Deployment by its own name), the intake ignoring what
other shards own, and the flags. tests/operator/test_operator_sharding.py runs two shards on
the real plane."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from flowpod_operator import running
from flowpod_operator._decisions.sharding import Shard, shard_of
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.queueing import WorkQueue


def test_the_hash_is_sha256_of_namespace_and_name_not_pythons_hash():
    expected = int.from_bytes(hashlib.sha256(b"team-a/etl").digest()[:8], "big") % 7
    assert shard_of("team-a", "etl", 7) == expected
    assert shard_of("team-a", "etl", 1) == 0


def test_shards_split_work_and_every_key_has_exactly_one_owner():
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s.index for s in shards if s.owns("ns", f"d{n}")] for n in range(300)]
    assert all(len(owner) == 1 for owner in owners)
    counts = [sum(1 for owner in owners if owner == [i]) for i in range(3)]
    assert min(counts) > 50, counts  # 100 each on average


@pytest.mark.parametrize("deployment, run", [
    ("hello", "run"), (None, "adhoc"), ("d" * 80, "r" * 80)], ids=["deployment", "none",
                                                                  "long-names"])
def test_a_run_its_job_and_pod_have_one_owner(k8s, deployment, run):
    flowrun = k8s.flowrun(run, "ns", deployment=deployment)
    job, pod = k8s.job(flowrun), k8s.pod(flowrun)
    for count in (2, 3, 5):
        (owner,) = [i for i in range(count) if Shard(i, count).owns_flowrun(flowrun)]
        assert Shard(owner, count).owns_child(job) and Shard(owner, count).owns_child(pod)


def test_all_runs_of_a_deployment_and_the_deployment_share_a_shard(k8s):
    deployment = k8s.deployment("etl", "ns")
    (owner,) = [i for i in range(4) if Shard(i, 4).owns_deployment(deployment)]
    for n in range(20):
        assert Shard(owner, 4).owns_flowrun(k8s.flowrun(f"run-{n}", "ns", deployment="etl"))


def test_the_intake_ignores_what_other_shards_own(k8s):
    flowrun = k8s.flowrun("run", "ns", deployment="etl")
    mine = next(i for i in range(2) if Shard(i, 2).owns_flowrun(flowrun))

    def fed(shard: Shard) -> Index:
        index = Index()
        intake = Intake(index, WorkQueue(), EventRecorder(_post, clock=lambda: k8s.now),
                        shard=shard)
        intake.on_deployment("ADDED", k8s.deployment("etl", "ns"))
        intake.on_flowrun("ADDED", flowrun)
        intake.on_job("ADDED", k8s.job(flowrun))
        intake.on_pod("ADDED", k8s.pod(flowrun))
        return index

    ours, theirs = fed(Shard(mine, 2)), fed(Shard(1 - mine, 2))
    assert ours.flowrun(("ns", "run")) is not None
    assert ours.deployment("ns", "etl") is not None
    assert [len(c) for c in ours.children(("ns", "run"))] == [1, 1]
    assert theirs.flowrun(("ns", "run")) is None and theirs.deployment("ns", "etl") is None
    assert theirs.children(("ns", "run")) == ([], [])


async def _post(*_: object) -> None:
    await asyncio.sleep(0)


def _options(*argv: str) -> running.OperatorOptions:
    return running.options_from_args(running.build_parser().parse_args(list(argv)))


def test_each_shard_has_its_own_lease():
    assert _options().lease("ns").name == "flowpod-operator"
    sharded = _options("--shards", "3", "--shard", "2", "--leader-election")
    assert sharded.shard == Shard(2, 3)
    assert sharded.lease("ns").name == "flowpod-operator-shard-2"


@pytest.mark.parametrize("argv, message", [
    (["--shards", "0"], "--shards must be at least 1"),
    (["--shards", "2", "--shard", "2"], "--shard must be from 0 to 1 (--shards 2), got 2"),
])
def test_bad_shard_flags_name_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        running.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
