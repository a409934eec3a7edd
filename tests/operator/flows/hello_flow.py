"""A tiny flow run by tests/operator/test_engine_in_pod.py inside a pod on the test node."""

from pathlib import Path

from flowpod import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow
def hello(n: int = 3, marker: str = "") -> dict:
    if marker:
        # Lets the test tell whether user code ran at all.
        Path(marker).write_text("ran")
    values = [double(i) for i in range(n)]
    return {"sum": sum(values), "n": n}
