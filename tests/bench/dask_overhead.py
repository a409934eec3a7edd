"""Benchmark: per-task cost of `.map()` over 1,000 task runs on Dask, against Dask's own.

Role: a plain script (not a test) that prints figures. It starts one dask.distributed
LocalCluster (2 worker processes, 1 thread each) in a process of its own (on Prefect's
interpreter when Prefect is compared, since its workers run Prefect) and measures, in
fresh subprocesses that all use that cluster, interleaved and best of the repeats (other
load on a shared machine only adds time):

- dask:         Dask's own per-task cost: `client.submit(inc, i, pure=False)` for each
                item, then `client.gather` (one future per task run, as flowpod sends);
                `client.map` (one batched graph) is printed beside it;
- flowpod dask: a flow with `DaskTaskRunner(address)` running `inc.map(range(N))` and
                its `.result()`, every state recorded by the engine (the body's time:
                connecting to the scheduler is flow start-up);
- flowpod threads: the same flow with the default thread pool, for scale;
- prefect dask: when PREFECT_PYTHON points at an interpreter with Prefect 3 and
                prefect-dask (`make bench-prefect-venv` makes one outside the repository),
                the same flow with prefect_dask's DaskTaskRunner on the same cluster.

Goal: flowpod's per-task time on Dask is at most Dask's own (submit) plus 20%.

    .venv/bin/python tests/bench/dask_overhead.py
    PREFECT_PYTHON=~/.cache/flowpod/bench-prefect/bin/python \
        .venv/bin/python tests/bench/dask_overhead.py

Options: --tasks N (default 1000), --repeats R (default 5; Prefect runs once: it takes
minutes per 1,000 task runs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

GOAL = 1.2  # flowpod on Dask: at most Dask's own per-task cost plus 20%

CLUSTER = textwrap.dedent('''
    import sys
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    cluster.close()
''')

# Runs inside the measured interpreter; prints "BENCH <best body seconds>".
WORKLOAD = textwrap.dedent('''
    import json, sys, time
    kind, address, tasks, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def inc(x):
        return x + 1

    if kind in ("dask-submit", "dask-map"):
        from distributed import Client
        client = Client(address)
        def once(n):
            started = time.perf_counter()
            if kind == "dask-submit":
                futures = [client.submit(inc, i, pure=False) for i in range(n)]
            else:
                futures = client.map(inc, range(n), pure=False)
            assert client.gather(futures)[-1] == n
            return time.perf_counter() - started
    else:
        if kind == "prefect":
            from prefect import flow, task
            from prefect_dask import DaskTaskRunner
        else:
            from flowpod import flow, task
            from flowpod.task_runners import DaskTaskRunner, ThreadPoolTaskRunner
        runner = (ThreadPoolTaskRunner() if kind == "flowpod-threads"
                  else DaskTaskRunner(address=address))
        inc = task(inc)

        @flow(task_runner=runner)
        def mapped(n):
            started = time.perf_counter()
            assert inc.map(range(n)).result()[-1] == n
            return time.perf_counter() - started

        once = mapped
    once(10)  # warm-up: imports, connections (Prefect starts its API server here)
    print("BENCH " + json.dumps(min(once(tasks) for _ in range(repeats))))
''')


def measure(python: str, kind: str, address: str, tasks: int, repeats: int,
            env: dict[str, str] | None = None) -> float:
    """Best µs per task run of `kind`, in a fresh `python`."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(WORKLOAD)
    try:
        done = subprocess.run([python, script.name, kind, address, str(tasks), str(repeats)],
                              capture_output=True, text=True, timeout=3600,
                              env={**os.environ, **(env or {})})
    finally:
        os.unlink(script.name)
    line = next((out for out in done.stdout.splitlines() if out.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{kind} workload failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(line[len("BENCH "):]) / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    prefect_python = os.environ.get("PREFECT_PYTHON")

    # Prefect's DaskTaskRunner runs its task engine on the workers, so with Prefect the
    # cluster runs on its interpreter, with flowpod's sources importable too (flowpod's
    # workers need flowpod.task_runners; its dependencies are Prefect's as well).
    source = os.path.join(os.path.dirname(__file__), "..", "..", "engine_image", "src")
    cluster = subprocess.Popen(
        [prefect_python or sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.path.abspath(source)} if prefect_python else None)
    try:
        address = cluster.stdout.readline().strip()
        if not address:
            raise SystemExit("the LocalCluster did not start")
        with tempfile.TemporaryDirectory() as results:
            ours = {"FLOWPOD_RESULT_DIR": results}
            figures: dict[str, list[float]] = {}
            rounds = ["dask-submit", "dask-map", "flowpod-dask", "flowpod-threads"]
            for _ in range(2):  # two rounds, interleaved: a burst of load hits all alike
                for kind in rounds:
                    figures.setdefault(kind, []).append(measure(
                        sys.executable, kind, address, options.tasks, options.repeats, ours))
        best = {kind: min(values) for kind, values in figures.items()}
        report(best, options.tasks, address)
        if not prefect_python:
            print("(set PREFECT_PYTHON to an interpreter with prefect and prefect-dask, e.g. "
                  "after `make bench-prefect-venv`, to compare with Prefect's DaskTaskRunner)")
            return
        with tempfile.TemporaryDirectory() as home:
            theirs = measure(prefect_python, "prefect", address, options.tasks, 1,
                             {"PREFECT_HOME": home, "DO_NOT_TRACK": "1",
                              "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                              # its local API server starts slowly on a loaded machine
                              "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
        version = subprocess.run(
            [prefect_python, "-c", "import prefect, prefect_dask; "
             "print(prefect.__version__, prefect_dask.__version__)"],
            capture_output=True, text=True).stdout.split()
        print(f"prefect {version[0]} + prefect-dask {version[1]} DaskTaskRunner .map(): "
              f"{theirs:8.1f} µs/task  -> {theirs / best['dask-submit']:.1f}x Dask's own; "
              f"load average {os.getloadavg()[0]:.2f}")
    finally:
        try:
            cluster.communicate(input="", timeout=120)
        except subprocess.TimeoutExpired:  # workers that do not stop: the figures stand
            os.killpg(cluster.pid, signal.SIGKILL)


def report(best: dict[str, float], tasks: int, address: str) -> None:
    print(f"{tasks} task runs, LocalCluster of 2 workers x 1 thread at {address}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"dask submit + gather:           {best['dask-submit']:8.1f} µs/task  (Dask's own)")
    print(f"dask map + gather:              {best['dask-map']:8.1f} µs/task  (one batched graph)")
    print(f"flowpod DaskTaskRunner .map():  {best['flowpod-dask']:8.1f} µs/task  -> "
          f"{best['flowpod-dask'] / best['dask-submit']:.2f}x Dask's own "
          f"(goal: at most {GOAL:.1f}x)")
    print(f"flowpod thread pool .map():     {best['flowpod-threads']:8.1f} µs/task")


if __name__ == "__main__":
    main()
