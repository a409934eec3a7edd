"""Benchmark: a burst of N FlowRuns (default 1,000) -> all their Jobs created.

Role: a plain script that prints figures (goal: <= 30 s on this 2-core machine, one
operator replica). It starts the operator as a subprocess watching a fresh namespace,
creates the FlowRuns as fast as the API server takes them (many POSTs in flight), and
times from the first POST to the arrival of the last Job on a watch of Jobs. The runs'
pods are "parked" (a nodeSelector no node matches): the Job controller still creates
every pod and the scheduler still tries each, but no Python process starts for them.

    .venv/bin/python tests/bench/operator_burst.py [--runs 1000]

With `--shards N` it runs the burst twice, side by side: one operator, then N shards
(`--shards N --shard I`, one process each), both over 8 Deployments (runs hash to a shard by
their Deployment), and prints the rate of each.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import _operator_bench as ob
import operator_harness as harness
from flowpod import contract


async def burst(bench: ob.Bench, runs: int, in_flight: int,
                deployments: int = 1) -> dict[str, float]:
    ns = bench.namespace
    parked = ["parked"] if deployments == 1 else [f"parked-{n}" for n in range(deployments)]
    for deployment in parked:
        bench.api.create_deployment(ns, deployment, entrypoint="examples/hello/flow.py:hello",
                                    podTemplate=ob.PARKED, pendingTimeoutSeconds=3600)
    async with ob.async_client(bench.cluster, connections=in_flight) as client:
        jobs: dict[str, float] = {}
        changed = asyncio.Event()
        watcher = asyncio.create_task(ob.watch(
            client, f"/apis/batch/v1/namespaces/{ns}/jobs", jobs, changed, key="label"))
        await asyncio.sleep(0.5)
        path = contract.flowrun_path(ns)
        names = [f"burst-{index:04d}" for index in range(runs)]
        gate = asyncio.Semaphore(in_flight)

        async def create(index: int, name: str) -> None:
            body = ob.flowrun_body(name, parked[index % len(parked)])
            async with gate:
                response = await client.post(path, json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(create(index, name) for index, name in enumerate(names)))
        created = time.perf_counter()
        deadline = started + 300
        while len(jobs) < runs and time.perf_counter() < deadline:
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), timeout=5)
            except TimeoutError:
                pass
        watcher.cancel()
    last = max(jobs.values()) if jobs else float("nan")
    return {"runs": runs, "jobs": len(jobs), "posted": created - started,
            "all_jobs": last - started}


def _flags(shards: int, index: int) -> tuple[str, ...]:
    return ("--shards", str(shards), "--shard", str(index)) if shards > 1 else ()


def sharded(args: argparse.Namespace, shards: int) -> dict[str, float]:
    """The burst over 8 Deployments with `shards` operator processes, one per shard."""
    with ob.bench_env(f"burst{shards}", *_flags(shards, 0)) as bench:
        others = [harness.OperatorProcess(
            bench.cluster.kubeconfig, bench.cluster.state_dir / "logs" /
            f"operator-{bench.namespace}-shard-{index}.log", (bench.namespace,),
            ("--log-level", "WARNING", *_flags(shards, index))).start()
            for index in range(1, shards)]
        try:
            return asyncio.run(burst(bench, args.runs, args.in_flight, deployments=8))
        finally:
            for proc in others:
                proc.stop()


def compare(args: argparse.Namespace) -> None:
    rows = [(shards, sharded(args, shards)) for shards in (1, args.shards)]
    print(f"Burst of {args.runs} FlowRuns over 8 Deployments -> all Jobs created:")
    for shards, figures in rows:
        rate = figures["jobs"] / figures["all_jobs"]
        print(f"  {shards} shard(s): {figures['jobs']} / {figures['runs']} Jobs in "
              f"{figures['all_jobs']:6.1f} s = {rate:6.1f} runs/s "
              f"(posted in {figures['posted']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=32,
                        help="concurrent FlowRun POSTs (default 32)")
    parser.add_argument("--shards", type=int, default=1,
                        help="also run the burst with this many operator shards and print "
                             "both rates (default 1: one operator only)")
    args = parser.parse_args()
    if args.shards > 1:
        compare(args)
        return
    with ob.bench_env("burst") as bench:
        figures = asyncio.run(burst(bench, args.runs, args.in_flight))
        writes = bench.operator.log_text().count('"level": "WARNING"')
    print(f"Burst of {figures['runs']} FlowRuns, one operator replica:")
    print(f"  FlowRuns posted in      {figures['posted']:6.1f} s")
    print(f"  Jobs created            {figures['jobs']} / {figures['runs']}")
    print(f"  all Jobs created after  {figures['all_jobs']:6.1f} s   (goal <= 30 s)")
    print(f"  operator warnings       {writes}")


if __name__ == "__main__":
    main()
