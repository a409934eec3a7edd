"""Flows for the result-storage and retry tests on the real plane (tests/operator/
test_operator_retry.py). The result volume is mounted at $RESULTS_MOUNT: each `step` appends
its input to the counter file there (a side effect a rerun would repeat), and `last` fails
while the flag file exists."""

import os
from pathlib import Path

from flowpod import flow, task

# The test node runs pods as host processes and makes a volume's mount point on the host,
# so the test mounts under its own temporary directory rather than at /mnt/results.
RESULTS = Path(os.environ.get("RESULTS_MOUNT", "/mnt/results"))
COUNTER = RESULTS / "counter"
FLAG = RESULTS / "fail-last"


@task(persist_result=True)
def step(x: int) -> int:
    with COUNTER.open("a") as out:
        out.write(f"{x}\n")
    return x * 10


@task
def last(values: list) -> int:
    if FLAG.exists():
        raise RuntimeError(f"failing while {FLAG} exists")
    return sum(values)


@flow
def pipeline() -> int:
    return last([step(1), step(2)])


@flow
def large() -> str:
    return "x" * 10_000
