"""Benchmark: one parent flow fans out to N children with flowpod.run_deployment.

Role: on the local plane, with the operator as a real subprocess and every run a real pod
on the test node, a parent (tests/operator/flows/fanout_cases.py:fan_out) starts N children
that do nothing (`nothing`) and waits for all of them. Prints:

- parent Running -> all N children created, and all N Completed -> parent Completed
  (arrival times of watch events at this process);
- API requests per child: the API server's own `apiserver_request_total` before and after,
  by verb and resource (every client: operator, engines, test node, controllers);
- operator and API server CPU time per child (the operator's /proc stat, the API server's
  `process_cpu_seconds_total`): the per-child overhead of operator and API, excluding the
  pods' own start-up, which the test node's Python processes dominate.

The children's Deployment has a concurrencyLimit (default 10) so the 2-core test machine
runs at most that many child processes at once; the wall-clock figures therefore include
queueing for a slot, the CPU figures do not depend on it. A plain script, not a timed
test: `python tests/bench/fanout.py [N] [LIMIT]`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections import Counter

from _operator_bench import Bench, async_client, bench_env, watch

from flowpod import contract

CASES = "tests/operator/flows/fanout_cases.py"
_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def _metrics(bench: Bench) -> tuple[Counter, float]:
    """(requests by (verb, resource), API server CPU seconds) from its /metrics."""
    text = bench.api.http.get("/metrics").text
    requests: Counter = Counter()
    cpu = 0.0
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            cpu = float(line.split()[1])
        found = _SAMPLE.match(line)
        if found is None or found["name"] != "apiserver_request_total":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        resource = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else "")
        requests[(labels.get("verb", ""), resource)] += int(float(found["value"]))
    return requests, cpu


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _state_is(kind: str):
    return lambda obj: ((obj.get("status") or {}).get("state") or {}).get("type") == kind


def _ended_badly(obj: dict) -> bool:
    state = ((obj.get("status") or {}).get("state") or {}).get("type")
    return state in ("FAILED", "CRASHED", "CANCELLED")


async def _run(bench: Bench, n: int) -> dict[str, float]:
    ns = bench.namespace
    created: dict[str, float] = {}
    completed: dict[str, float] = {}
    parent_running: dict[str, float] = {}
    ended_badly: dict[str, float] = {}
    changed = asyncio.Event()
    path = contract.flowrun_path(ns)
    async with async_client(bench.cluster) as client:
        watchers = [asyncio.create_task(watch(client, path, created, changed)),
                    asyncio.create_task(watch(client, path, completed, changed,
                                              ready=_state_is("COMPLETED"))),
                    asyncio.create_task(watch(client, path, parent_running, changed,
                                              ready=_state_is("RUNNING"))),
                    asyncio.create_task(watch(client, path, ended_badly, changed,
                                              ready=_ended_badly))]
        await asyncio.sleep(0.5)  # the watches are listening
        start = time.perf_counter()
        bench.api.create_flowrun(ns, "parent", deploymentName="fan-out",
                                 parameters={"n": n, "deployment": "nothing"})
        deadline = start + 60 + 3 * n
        while "parent" not in completed:
            if "parent" in ended_badly:
                raise SystemExit("the parent did not complete: `kubectl get fr parent -n "
                                 f"{ns}` says why")
            if time.perf_counter() > deadline:
                raise SystemExit(f"the parent did not complete in time; "
                                 f"{len(completed)} runs completed")
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), 5)
            except asyncio.TimeoutError:
                pass
        for task in watchers:
            task.cancel()
    children = [name for name in created if name != "parent"]
    assert len(children) == n, f"{len(children)} children created, expected {n}"
    return {"start": start, "running": parent_running["parent"],
            "all_created": max(created[c] for c in children),
            "all_completed": max(completed[c] for c in children),
            "parent_completed": completed["parent"]}


def main(n: int = 200, limit: int = 10) -> None:
    with bench_env("fanout") as bench:
        ns = bench.namespace
        bench.api.create_deployment(ns, "nothing", entrypoint=f"{CASES}:nothing",
                                    concurrencyLimit=limit, successfulRunsHistoryLimit=0)
        bench.api.create_deployment(ns, "fan-out", entrypoint=f"{CASES}:fan_out")
        assert bench.operator.proc is not None
        pid = bench.operator.proc.pid
        before, api_cpu_before = _metrics(bench)
        operator_cpu_before = _cpu_seconds(pid)
        times = asyncio.run(_run(bench, n))
        time.sleep(2)  # let the last status writes and Events land before counting
        after, api_cpu_after = _metrics(bench)
        operator_cpu = _cpu_seconds(pid) - operator_cpu_before
        api_cpu = api_cpu_after - api_cpu_before
    delta = after - before
    total = sum(delta.values())
    print(f"fan-out of {n} children (concurrencyLimit {limit} on the children's Deployment)")
    print(f"  parent created -> parent Running     {times['running'] - times['start']:7.2f} s")
    print(f"  parent Running -> all children created {times['all_created'] - times['running']:5.2f} s")
    print(f"  all children Completed -> parent Completed "
          f"{times['parent_completed'] - times['all_completed']:.2f} s")
    print(f"  parent created -> parent Completed   "
          f"{times['parent_completed'] - times['start']:7.2f} s")
    print(f"  API requests: {total} in all, {total / n:.1f} per child")
    for (verb, resource), count in sorted(delta.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {verb:7} {resource:28} {count:6}  {count / n:5.2f} per child")
    print(f"  CPU per child: operator {1000 * operator_cpu / n:.1f} ms, "
          f"API server {1000 * api_cpu / n:.1f} ms, "
          f"together {1000 * (operator_cpu + api_cpu) / n:.1f} ms (goal: < 50 ms)")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
