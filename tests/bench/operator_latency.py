"""Benchmark: FlowRun created -> its Job created, p50 / p99 over N runs (default 200).

Role: a plain script that prints figures (goal: p50 <= 50 ms, p99 <= 250 ms). It starts the
operator as a subprocess watching a fresh namespace, then creates FlowRuns one at a time
and times, for each, from just before the POST of the FlowRun to the arrival of its Job on
a watch of Jobs. The runs' pods are "parked" (a nodeSelector no node matches), so what is
measured is the operator's reaction, not Python processes starting on the test node.

    .venv/bin/python tests/bench/operator_latency.py [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import _operator_bench as ob
from flowpod import contract


async def measure(bench: ob.Bench, runs: int, gap: float) -> list[float]:
    ns = bench.namespace
    bench.api.create_deployment(ns, "parked", entrypoint="examples/hello/flow.py:hello",
                                podTemplate=ob.PARKED, pendingTimeoutSeconds=3600)
    latencies: list[float] = []
    async with ob.async_client(bench.cluster) as client:
        seen: dict[str, float] = {}
        changed = asyncio.Event()
        watcher = asyncio.create_task(ob.watch(
            client, f"/apis/batch/v1/namespaces/{ns}/jobs", seen, changed, key="label"))
        await asyncio.sleep(0.5)
        path = contract.flowrun_path(ns)
        for index in range(runs):
            name = f"lat-{index:04d}"
            started = time.perf_counter()
            response = await client.post(path, json=ob.flowrun_body(name, "parked"))
            response.raise_for_status()
            while name not in seen:
                changed.clear()
                await asyncio.wait_for(changed.wait(), timeout=30)
            latencies.append(seen[name] - started)
            await asyncio.sleep(gap)
        watcher.cancel()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02,
                        help="pause between runs, seconds (default 0.02)")
    args = parser.parse_args()
    with ob.bench_env("latency") as bench:
        latencies = asyncio.run(measure(bench, args.runs, args.gap))
    ms = [1000 * value for value in latencies]
    print(f"FlowRun created -> Job created, {len(ms)} runs, one operator replica:")
    print(f"  p50 {ob.percentile(ms, 0.50):7.1f} ms   (goal <= 50 ms)")
    print(f"  p90 {ob.percentile(ms, 0.90):7.1f} ms")
    print(f"  p99 {ob.percentile(ms, 0.99):7.1f} ms   (goal <= 250 ms)")
    print(f"  max {max(ms):7.1f} ms   mean {statistics.fmean(ms):.1f} ms")


if __name__ == "__main__":
    main()
