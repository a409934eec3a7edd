"""Benchmark: `kubectl apply` of a FlowRun -> Completed, for a trivial flow (goal <= 2 s).

Role: a plain script that prints figures. It starts the operator as a subprocess watching a
fresh namespace with the examples/hello Deployment, then, N times in sequence (default 10),
runs `kubectl apply -f -` with a new FlowRun and times from just before kubectl starts to
the arrival, on a watch of FlowRuns, of that run in state COMPLETED. Everything is real:
the Job, the pod on the test node, the engine in it writing Running and Completed.

    .venv/bin/python tests/bench/operator_apply.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import _operator_bench as ob
from flowpod import contract

FLOWRUN = """apiVersion: flowpod.io/v1alpha1
kind: FlowRun
metadata:
  name: {name}
spec:
  deploymentName: hello
  parameters: {{name: bench}}
"""


def _completed(obj: dict) -> bool:
    return ((obj.get("status") or {}).get("state") or {}).get("type") == "COMPLETED"


async def measure(bench: ob.Bench, runs: int) -> list[float]:
    ns = bench.namespace
    bench.cluster.kubectl("apply", "-n", ns, "-f",
                          str(ob.repo_path("examples", "hello", "deployment.yaml")))
    timings: list[float] = []
    async with ob.async_client(bench.cluster) as client:
        done: dict[str, float] = {}
        changed = asyncio.Event()
        watcher = asyncio.create_task(ob.watch(client, contract.flowrun_path(ns), done,
                                               changed, ready=_completed))
        await asyncio.sleep(0.5)
        for index in range(runs):
            name = f"apply-{index:03d}"
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                str(bench.cluster.bin_dir / "kubectl"), "--kubeconfig",
                str(bench.cluster.kubeconfig), "apply", "-n", ns, "-f", "-",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
            await process.communicate(FLOWRUN.format(name=name).encode())
            assert process.returncode == 0, f"kubectl apply failed for {name}"
            while name not in done:
                changed.clear()
                await asyncio.wait_for(changed.wait(), timeout=60)
            timings.append(done[name] - started)
            await asyncio.sleep(0.2)
        watcher.cancel()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with ob.bench_env("apply") as bench:
        seconds = asyncio.run(measure(bench, args.runs))
    print(f"kubectl apply -> Completed (examples/hello), {len(seconds)} runs in sequence:")
    print(f"  p50 {statistics.median(seconds):5.2f} s   (goal <= 2 s)")
    print(f"  min {min(seconds):5.2f} s   max {max(seconds):5.2f} s")


if __name__ == "__main__":
    main()
