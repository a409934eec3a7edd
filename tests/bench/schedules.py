"""Benchmark: many scheduled Deployments on one operator: runs created vs expected, lateness.

Role: a plain script that prints figures (not a timed test). It starts the operator as a
subprocess watching a fresh namespace, creates N Deployments (default 500) each with a 10 s
interval schedule, and for `--seconds` (default 120) watches the FlowRuns the scheduler
creates. Lateness is a run's arrival on the watch minus its due time (spec.scheduledTime);
expected runs are every due time after a Deployment's creation (the scheduler's first cursor)
up to the end of the window. The runs' pods are "parked" (a nodeSelector no node matches),
so what is measured is the scheduler, not Python processes starting on the test node. Also
reported: duplicates (two FlowRuns, by name, for one Deployment and due time, from the
flowpod.io/deployment label and spec.scheduledTime; the goal is 0), and the operator's CPU
seconds over the window and its peak RSS (VmHWM, the high-water mark, from /proc).

    .venv/bin/python tests/bench/schedules.py [--deployments 500] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx

import _operator_bench as ob
from flowpod import contract

INTERVAL = 10
GRACE = 10.0  # seconds after the window that a run due inside it may still arrive


@dataclass
class Tally:
    """Arrival time (wall clock) and due time of every scheduled run seen on the watch."""

    arrivals: dict[str, tuple[float, datetime]] = field(default_factory=dict)
    # (Deployment label, due time) -> the names of the runs seen for it.
    names: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    listings: int = 0  # 1 + how often the watch broke off and the runs were listed again

    def duplicates(self) -> int:
        return sum(len(names) - 1 for names in self.names.values())


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _deployment(name: str) -> dict:
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
            "metadata": {"name": name},
            "spec": {"entrypoint": "examples/hello/flow.py:hello", "image": "flowpod/engine:dev",
                     "podTemplate": ob.PARKED, "pendingTimeoutSeconds": 3600,
                     "schedules": [{"interval": INTERVAL}]}}


async def _create_all(client, ns: str, count: int) -> dict[str, datetime]:
    """POST the Deployments (32 at a time); their creationTimestamps by name."""
    gate = asyncio.Semaphore(32)
    created: dict[str, datetime] = {}

    async def one(index: int) -> None:
        async with gate:
            response = await client.post(contract.deployment_path(ns),
                                         json=_deployment(f"sched-{index:04d}"))
            response.raise_for_status()
            meta = response.json()["metadata"]
            created[meta["name"]] = contract.parse_time(meta["creationTimestamp"])

    await asyncio.gather(*(one(i) for i in range(count)))
    return created


def _note(tally: Tally, obj: dict, seen_at: float) -> None:
    name, due = obj["metadata"]["name"], (obj.get("spec") or {}).get("scheduledTime")
    if due and name not in tally.arrivals:
        tally.arrivals[name] = (seen_at, contract.parse_time(due))
        owner = (obj["metadata"].get("labels") or {}).get(contract.LABEL_DEPLOYMENT, "")
        tally.names.setdefault((owner, due), set()).add(name)


async def _watch_runs(client, ns: str, tally: Tally) -> None:
    """Note each run as it arrives. Under load the API server ends watches (or sends an
    ERROR event: too old a resourceVersion); then list again (runs first seen in a listing
    are noted at listing time, so their lag is overstated, never hidden) and watch on."""
    path = contract.flowrun_path(ns)
    while True:
        try:
            listing = (await client.get(path)).json()
            tally.listings += 1
            for obj in listing.get("items", []):
                _note(tally, obj, time.time())
            params = {"watch": "1", "resourceVersion": listing["metadata"]["resourceVersion"]}
            async with client.stream("GET", path, params=params, timeout=None) as response:
                async for line in response.aiter_lines():
                    event = json.loads(line) if line else {}
                    if event.get("type") == "ERROR":
                        break
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        _note(tally, event["object"], time.time())
        except httpx.HTTPError:
            pass  # the watch broke off: list and watch again


def _expected(created: dict[str, datetime], until: datetime) -> int:
    """Due times in (creation, until] over all Deployments (interval anchored at 2020)."""
    anchor = datetime(2020, 1, 1, tzinfo=timezone.utc)
    step = timedelta(seconds=INTERVAL)
    return sum(max(0, (until - anchor) // step - (when - anchor) // step)
               for when in created.values())


async def measure(bench: ob.Bench, deployments: int, seconds: float) -> None:
    ns, pid = bench.namespace, bench.operator.proc.pid
    tally = Tally()
    async with ob.async_client(bench.cluster) as client:
        watcher = asyncio.create_task(_watch_runs(client, ns, tally))
        await asyncio.sleep(0.5)
        cpu0 = _cpu_seconds(pid)
        started = time.time()
        created = await _create_all(client, ns, deployments)
        print(f"created {deployments} Deployments in {time.time() - started:.1f} s")
        window_end = started + seconds
        await asyncio.sleep(max(0.0, window_end - time.time()))
        cpu = _cpu_seconds(pid) - cpu0
        rss, peak = _memory_mib(pid)
        await asyncio.sleep(GRACE)
        if watcher.done():
            watcher.result()  # the watch must not end silently: raise what ended it
        watcher.cancel()
    until = datetime.fromtimestamp(window_end, timezone.utc)
    due_in_window = {n: (a, d) for n, (a, d) in tally.arrivals.items() if d <= until}
    late = sorted(1000 * (a - d.timestamp()) for a, d in due_in_window.values())
    expected = _expected(created, until)
    print(f"{deployments} Deployments x interval {INTERVAL} s, {seconds:.0f} s window, "
          f"one operator:")
    print(f"  runs created {len(due_in_window)} of {expected} expected "
          f"(due in the window, seen within {GRACE:.0f} s after it)")
    print(f"  duplicates (runs beyond one per Deployment and due time): "
          f"{tally.duplicates()}; the benchmark's watch re-listed {tally.listings - 1} times")
    if late:
        print(f"  lag (created - due): p50 {ob.percentile(late, 0.5):.0f} ms   "
              f"p99 {ob.percentile(late, 0.99):.0f} ms   max {late[-1]:.0f} ms")
    print(f"  operator CPU {cpu:.1f} s over the window ({100 * cpu / seconds:.0f}% of one "
          f"core); RSS {rss:.0f} MiB at the end, peak {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    with ob.bench_env("schedules") as bench:
        asyncio.run(measure(bench, args.deployments, args.seconds))


if __name__ == "__main__":
    main()
