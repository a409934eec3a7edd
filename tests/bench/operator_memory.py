"""Benchmark: the operator's memory with many final FlowRuns, and how fast it acts after a restart.

Role: a plain script that prints figures (goals: at most 150 MiB RSS with 10,000 final runs,
growing sub-linearly; a run created across a restart gets its Job within 5 s). It starts the
operator as a subprocess watching a fresh namespace and, for each size in `--runs`
(default 1,000 then 10,000), tops the namespace up to that many FlowRuns created with
`spec.cancel: true` (the operator makes each Cancelled at once; no pod ever exists), then:

- RSS of the operator that saw them all arrive (VmRSS, and its peak VmHWM);
- restart: the operator is stopped, a probe FlowRun of a "parked" Deployment is created, a
  new operator is started; printed are start -> healthy, start -> the probe's Job, and the
  new operator's RSS once it has listed every run.

With `--live N` (default 300) it then creates N parked runs (their pods match no node, so
they stay Pending and hold their Jobs: live runs the operator must look after), restarts
again and prints start -> the probe's Job with them.

    .venv/bin/python tests/bench/operator_memory.py [--runs 1000 10000] [--live 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from contextlib import contextmanager
from pathlib import Path

import _operator_bench as ob
from _operator_bench import harness
from flowpod import contract

_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_MIB = 1024


def _status_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _final(obj: dict) -> bool:
    return ((obj.get("status") or {}).get("state") or {}).get("type") in _FINAL


class MemoryBench:
    def __init__(self, bench: ob.Bench, in_flight: int) -> None:
        self.bench = bench
        self.ns = bench.namespace
        self.in_flight = in_flight
        self.created = 0
        self.final: dict[str, float] = {}
        self.jobs: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.current = bench.operator
        self.compare: Path | None = None
        self.restarts = 0  # probes already in the namespace, so new ones get new names
        self.probe_timeout = 120.0

    async def create(self, client, names: list[str], *, cancel: bool) -> None:
        """POST the FlowRuns, `in_flight` at a time, printing progress."""
        gate = asyncio.Semaphore(self.in_flight)
        path = contract.flowrun_path(self.ns)
        done = 0
        started = time.perf_counter()

        async def post(name: str) -> None:
            nonlocal done
            body = ob.flowrun_body(name, "history" if cancel else "parked")
            if cancel:
                body["spec"]["cancel"] = True
            async with gate:
                for _ in range(5):
                    response = await client.post(path, json=body)
                    if response.status_code != 429 and response.status_code < 500:
                        break
                    await asyncio.sleep(1)
                response.raise_for_status()
            done += 1
            if done % 1000 == 0:
                print(f"    {done} / {len(names)} posted "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

        await asyncio.gather(*(post(name) for name in names))

    async def wait(self, table: dict[str, float], count: int, what: str,
                   timeout: float, name: str | None = None) -> None:
        """Until `table` holds `count` entries (or the entry `name`)."""
        deadline = time.perf_counter() + timeout
        reported = time.perf_counter()
        while (name not in table) if name else len(table) < count:
            if time.perf_counter() > deadline:
                if name:
                    raise TimeoutError(name)
                raise SystemExit(f"only {len(table)} / {count} {what} after {timeout:.0f} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=5)
            except TimeoutError:
                pass
            if time.perf_counter() - reported > 10:
                reported = time.perf_counter()
                print(f"    {len(table)} / {count} {what}", flush=True)

    async def settled_rss(self, pid: int) -> dict[str, int]:
        # Let the last decisions and Events finish before reading.
        await asyncio.sleep(5)
        return _status_kib(pid)

    async def restart(self, client, probe: str,
                      operator: harness.OperatorProcess | None = None) -> dict[str, float]:
        """Stop the running operator, create `probe`, start `operator` (default: this
        checkout's again); time the probe's Job from the start."""
        self.current.stop()
        self.current = operator or self.bench.operator
        response = await client.post(contract.flowrun_path(self.ns),
                                     json=ob.flowrun_body(probe, "parked"))
        response.raise_for_status()
        started = time.perf_counter()
        await asyncio.to_thread(self.current.start, 120)
        healthy = time.perf_counter()
        try:
            await self.wait(self.jobs, 1, "probe Job", self.probe_timeout, name=probe)
        except TimeoutError:
            return {"healthy": healthy - started, "job": float("inf")}
        return {"healthy": healthy - started, "job": self.jobs[probe] - started}

    def other(self, source: Path) -> harness.OperatorProcess:
        """The operator of another checkout (its sources first on the path), for the
        same namespace."""
        mine = self.bench.operator
        paths = [str(source / "operator" / "src"), str(source / "engine_image" / "src")]
        log = mine.log_path.with_name(mine.log_path.stem + "-compared.log")
        return harness.OperatorProcess(mine.kubeconfig, log, mine.namespaces, mine.extra_args,
                                       extra_env={"PYTHONPATH": os.pathsep.join(paths)})


async def run(bench: ob.Bench, sizes: list[int], live: int, in_flight: int,
              compare: Path | None) -> None:
    ns = bench.namespace
    mb = MemoryBench(bench, in_flight)
    mb.compare = compare
    existing = bench.api.get(contract.flowrun_path(ns)) or {}
    names = [item["metadata"]["name"] for item in existing.get("items", [])]
    mb.created = sum(name.startswith("final-") for name in names)
    mb.restarts = sum(name.startswith("probe-") for name in names)
    if not names:
        bench.api.create_deployment(ns, "parked", entrypoint="examples/hello/flow.py:hello",
                                    podTemplate=ob.PARKED, pendingTimeoutSeconds=3600)
        # The final runs' Deployment keeps them all: its history limit is above any size.
        bench.api.create_deployment(ns, "history", entrypoint="examples/hello/flow.py:hello",
                                    podTemplate=ob.PARKED, failedRunsHistoryLimit=1_000_000)
    async with ob.async_client(bench.cluster, connections=in_flight + 4) as client:
        watchers = [
            asyncio.create_task(ob.watch(client, contract.flowrun_path(ns), mb.final,
                                         mb.changed, ready=_final)),
            asyncio.create_task(ob.watch(client, f"/apis/batch/v1/namespaces/{ns}/jobs",
                                         mb.jobs, mb.changed, key="label"))]
        await asyncio.sleep(0.5)
        print(f"operator RSS at start: {_status_kib(bench.operator.proc.pid)['VmRSS'] / _MIB:.0f} MiB")
        try:
            for size in sizes:
                await _one_size(mb, client, size)
            if live:
                await _live(mb, client, live)
        finally:
            mb.current.stop()
            for watcher in watchers:
                watcher.cancel()


async def _one_size(mb: MemoryBench, client, size: int) -> None:
    names = [f"final-{index:05d}" for index in range(mb.created, size)]
    print(f"{size} final runs: creating {len(names)} more", flush=True)
    started = time.perf_counter()
    await mb.create(client, names, cancel=True)
    mb.created = size
    await mb.wait(mb.final, size, "final", 900)
    print(f"    all {size} final after {time.perf_counter() - started:.0f} s", flush=True)
    seen = await mb.settled_rss(mb.current.proc.pid)
    print(f"  {size} final runs:")
    print(f"    RSS, operator that saw them arrive   {seen['VmRSS'] / _MIB:6.0f} MiB "
          f"(peak {seen['VmHWM'] / _MIB:.0f})")
    if mb.compare is not None:
        await _restarted(mb, client, f"probe-{size}-compared-{mb.restarts}",
                         f"{mb.compare}'s operator", mb.other(mb.compare))
    await _restarted(mb, client, f"probe-{size}-{mb.restarts}", "this checkout's operator")


async def _restarted(mb: MemoryBench, client, probe: str, who: str,
                     operator: harness.OperatorProcess | None = None) -> None:
    times = await mb.restart(client, probe, operator)
    # The new operator's picture: every run listed, the probe decided.
    fresh = await mb.settled_rss(mb.current.proc.pid)
    print(f"    {who}, restarted over them:")
    print(f"      RSS                                {fresh['VmRSS'] / _MIB:6.0f} MiB "
          f"(peak {fresh['VmHWM'] / _MIB:.0f})   (goal <= 150 MiB at 10,000)")
    print(f"      restart -> healthy                 {times['healthy']:6.2f} s")
    print(f"      restart -> a new run's Job         {times['job']:6.2f} s   (goal <= 5 s)",
          flush=True)


async def _live(mb: MemoryBench, client, live: int) -> None:
    names = [f"live-{mb.restarts}-{index:04d}" for index in range(live)]
    print(f"{live} live runs (parked pods): creating", flush=True)
    before = len(mb.jobs)
    await mb.create(client, names, cancel=False)
    await mb.wait(mb.jobs, before + live, "live Jobs", 600)
    print(f"  {live} live runs (and {mb.created} final):")
    if mb.compare is not None:
        await _restarted(mb, client, f"probe-live-compared-{mb.restarts}",
                         f"{mb.compare}'s operator", mb.other(mb.compare))
    await _restarted(mb, client, f"probe-live-{mb.restarts}", "this checkout's operator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000],
                        help="numbers of final runs to measure at, ascending")
    parser.add_argument("--live", type=int, default=300,
                        help="live runs for the last restart (0 = skip; default 300)")
    parser.add_argument("--in-flight", type=int, default=48,
                        help="concurrent FlowRun POSTs (default 48)")
    parser.add_argument("--namespace", metavar="NS",
                        help="measure over the runs already in this namespace (e.g. one a "
                             "previous run of this benchmark left) instead of a new one")
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT",
                        help="also restart another checkout's operator over the same runs "
                             "first (e.g. a worktree of the main branch), for before/after")
    args = parser.parse_args()
    env = _existing(args.namespace) if args.namespace else ob.bench_env("memory")
    with env as bench:
        asyncio.run(run(bench, sorted(args.runs), args.live, args.in_flight, args.compare))


@contextmanager
def _existing(namespace: str):
    """The operator over a namespace that already holds runs; the namespace is kept."""
    state_dir = Path(os.environ.get("FLOWPOD_CLUSTER_DIR", ob.repo_path(".cluster"))).resolve()
    cluster = ob.plane.load(state_dir)
    log = cluster.state_dir / "logs" / f"operator-{namespace}.log"
    operator = harness.OperatorProcess(cluster.kubeconfig, log, (namespace,),
                                       ("--log-level", "WARNING")).start(120)
    bench = ob.Bench(cluster, namespace, operator)
    try:
        yield bench
    finally:
        operator.stop()
        bench.api.close()


if __name__ == "__main__":
    main()
