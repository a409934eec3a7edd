"""Benchmark: a leading operator SIGKILLed -> the standby's first Job, over several rounds.

Role: a plain script that prints figures (goal: at most the lease duration + 2 s). Two
operators with leader election watch a fresh namespace; each round SIGKILLs the one that
leads, creates a FlowRun at that moment, and times from the kill to that run's Job arriving
on a watch of Jobs -- the new leader's first write: the Lease expiring, its campaign, kopf's
listing and the first decision. The killed one comes back as the next round's standby. Pods
are "parked" (no node matches), so no flow process starts.

    .venv/bin/python tests/bench/operator_takeover.py [--rounds 5] [--lease-duration 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import _operator_bench as ob
import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for


def _leads(proc: harness.OperatorProcess, times: int) -> bool:
    return proc.log_text().count('"message": "leading"') >= times


async def measure(bench: ob.Bench, args: argparse.Namespace, election: tuple[str, ...]
                  ) -> list[float]:
    ns = bench.namespace
    bench.api.create_deployment(ns, "parked", entrypoint="examples/hello/flow.py:hello",
                                podTemplate=ob.PARKED, pendingTimeoutSeconds=3600)
    log = bench.cluster.state_dir / "logs" / f"operator-{ns}-standby.log"
    procs = [bench.operator, harness.OperatorProcess(bench.cluster.kubeconfig, log, (ns,),
                                                     election)]
    procs[1].start()
    takeovers: list[float] = []
    async with ob.async_client(bench.cluster) as client:
        seen: dict[str, float] = {}
        changed = asyncio.Event()
        watcher = asyncio.create_task(ob.watch(
            client, f"/apis/batch/v1/namespaces/{ns}/jobs", seen, changed, key="label"))
        for round_ in range(args.rounds):
            leader, standby = procs
            wait_for("a leader", leader.log_text, lambda t: '"message": "leading"' in t,
                     timeout=120)
            await asyncio.sleep(args.settle)  # the standby has seen the leader renew
            name = f"takeover-{round_}"
            killed = time.perf_counter()
            leader.kill()
            response = await client.post(contract.flowrun_path(ns),
                                         json=ob.flowrun_body(name, "parked"))
            response.raise_for_status()
            while name not in seen:
                changed.clear()
                await asyncio.wait_for(changed.wait(), timeout=120)
            takeovers.append(seen[name] - killed)
            print(f"  round {round_ + 1}: {takeovers[-1]:5.2f} s", flush=True)
            leader.start()  # back as the standby
            procs = [standby, leader]
        watcher.cancel()
    procs[1].stop()
    return takeovers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease-duration", type=int, default=15)
    parser.add_argument("--renew-deadline", type=float, default=10)
    parser.add_argument("--retry-period", type=float, default=2)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between a leader leading and the kill (default 3)")
    args = parser.parse_args()
    lease = f"takeover-{os.getpid()}"
    # INFO: the "leading" line is what a round waits for (bench_env asks for WARNING).
    election = ("--log-level=INFO", "--leader-election", f"--lease-name={lease}",
                f"--lease-duration={args.lease_duration}",
                f"--lease-renew-deadline={args.renew_deadline}",
                f"--lease-retry-period={args.retry_period}")
    with ob.bench_env("takeover", *election) as bench:
        try:
            takeovers = asyncio.run(measure(bench, args, election))
        finally:
            # The admin kubeconfig's namespace holds the Lease; this run's name is its own.
            bench.cluster.kubectl("delete", "lease", lease, check=False)
    goal = args.lease_duration + 2
    print(f"leader SIGKILLed -> the new leader's first Job, {len(takeovers)} rounds, lease "
          f"{args.lease_duration}/{args.renew_deadline:g}/{args.retry_period:g} s:")
    print(f"  p50 {ob.percentile(takeovers, 0.50):6.2f} s   (goal <= {goal} s)")
    print(f"  max {max(takeovers):6.2f} s   load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
