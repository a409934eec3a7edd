"""Benchmark: flowpod's per-task engine overhead, optionally side by side with Prefect 3.

Role: a plain script (not a test) that prints figures. It measures, in fresh
subprocesses, a flow calling a trivial task 1,000 times in sequence and a flow
mapping it over 1,000 items, with every state recorded, and reports microseconds
per task run: the flow body's own time / N (flow start-up excluded), best of
the repeats (like timeit: on a shared machine other load only adds time), and the ratio
of map to sequential per task (measured in the same process, so load shifts both). It
also times `python -c "import flowpod"`. When PREFECT_PYTHON points
at an interpreter with Prefect 3 installed (a separate venv; Prefect is never a
flowpod dependency), the same workload runs there and the ratio is printed.

    .venv/bin/python tests/bench/engine_overhead.py
    PREFECT_PYTHON=/work/prefect-bench-venv/bin/python \
        .venv/bin/python tests/bench/engine_overhead.py

Options: --tasks N (default 1000), --repeats R (default 7; Prefect uses min(R, 3)).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

# Runs inside the measured interpreter; the same source for both frameworks.
WORKLOAD = textwrap.dedent('''
    import json, sys, time
    framework, tasks, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if framework == "prefect":
        from prefect import flow, task
    else:
        from flowpod import flow, task

    @task
    def inc(x):
        return x + 1

    # Each flow times its own body, so flow start-up and shutdown (for Prefect, its
    # local API server) are not charged to the task runs.
    @flow
    def sequential(n):
        started = time.perf_counter()
        for i in range(n):
            inc(i)
        return time.perf_counter() - started

    @flow
    def mapped(n):
        started = time.perf_counter()
        inc.map(range(n)).result()
        return time.perf_counter() - started

    workloads = (("sequential", sequential), ("map", mapped))
    body = {name: [] for name, _ in workloads}
    flow_total = {}
    for name, fn in workloads:
        fn(10)  # warm-up: imports and first-run setup (Prefect starts its server here)
    for _ in range(repeats):
        # Interleaved, so a burst of load on a shared machine hits both workloads alike.
        for name, fn in workloads:
            started = time.perf_counter()
            body[name].append(fn(tasks))
            flow_total[name] = time.perf_counter() - started
    # Best of the repeats, as timeit does: noise from other processes only adds time.
    figures = {name: {"body_s": min(body[name]), "flow_total_s": flow_total[name]}
               for name, _ in workloads}
    print("BENCH " + json.dumps(figures))
''')


MAP_TARGET = 1.5  # .map() over N sync tasks may cost at most this much per task as N calls


def run_workload(python: str, framework: str, tasks: int, repeats: int,
                 env: dict[str, str] | None = None) -> dict[str, float]:
    """µs per task run for each workload (best body time / tasks), in a fresh `python`."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(WORKLOAD)
    try:
        done = subprocess.run([python, script.name, framework, str(tasks), str(repeats)],
                              capture_output=True, text=True, env={**os.environ, **(env or {})},
                              timeout=3600)
    finally:
        os.unlink(script.name)
    line = next((out for out in done.stdout.splitlines() if out.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{framework} workload failed ({done.returncode}):\n{done.stderr[-4000:]}")
    figures = json.loads(line[len("BENCH "):])
    return {name: f["body_s"] / tasks * 1e6 for name, f in figures.items()} | {
        f"{name}_total_ms": f["flow_total_s"] * 1e3 for name, f in figures.items()}


def import_time(python: str, module: str, repeats: int = 7) -> float:
    """Median wall time in seconds of `python -c "import module"` (process included)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([python, "-c", f"import {module}"], check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as results:
        ours = run_workload(sys.executable, "flowpod", options.tasks, options.repeats,
                            env={"FLOWPOD_RESULT_DIR": results})
    print(f"flowpod  sequential: {ours['sequential']:8.1f} µs/task  "
          f"(whole flow run {ours['sequential_total_ms']:.1f} ms for {options.tasks} tasks)")
    print(f"flowpod  map:        {ours['map']:8.1f} µs/task  "
          f"(whole flow run {ours['map_total_ms']:.1f} ms for {options.tasks} tasks)")
    # Same run, same process: the cost of concurrency (futures, the worker pool) per task.
    print(f"flowpod  map / sequential per task: {ours['map'] / ours['sequential']:.2f}x "
          f"(target: at most {MAP_TARGET}x)")
    print(f"python -c 'import flowpod': {import_time(sys.executable, 'flowpod'):.3f} s median "
          f"(bare interpreter: {import_time(sys.executable, 'sys'):.3f} s)")

    prefect_python = os.environ.get("PREFECT_PYTHON")
    if not prefect_python:
        print("(set PREFECT_PYTHON=/path/to/venv/bin/python to compare with Prefect 3)")
        return
    with tempfile.TemporaryDirectory() as prefect_home:
        theirs = run_workload(prefect_python, "prefect", options.tasks, min(options.repeats, 3),
                              env={"PREFECT_HOME": prefect_home, "DO_NOT_TRACK": "1",
                                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    version = subprocess.run([prefect_python, "-c", "import prefect; print(prefect.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    for name in ("sequential", "map"):
        print(f"prefect {version} {name + ':':11} {theirs[name]:8.1f} µs/task  "
              f"(whole flow run {theirs[name + '_total_ms']:.1f} ms)  ->  flowpod is "
              f"{theirs[name] / ours[name]:.0f}x faster (ratio 1/{theirs[name] / ours[name]:.0f})")


if __name__ == "__main__":
    main()
