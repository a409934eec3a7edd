"""Map and fan-out example: `.map` over the inputs, `.submit` for side branches, one reduce.

Run it with `kubectl apply -f examples/fan-out/`. The FlowRun ends Completed with the result
inline in its status (`kubectl get flowrun fan-out-example -o jsonpath='{.status.result}'`)
and a task-run summary counting every mapped task run (`.status.taskRuns.counts`).
Checked end to end by tests/delivery/test_examples.py.
"""

from __future__ import annotations

from flowpod import flow, get_run_logger, task, unmapped


@task
def square(x: int, offset: int) -> int:
    return x * x + offset


@task
def describe(values: list[int]) -> str:
    return f"{len(values)} values, max {max(values)}"


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def fan_out(count: int = 10, offset: int = 0) -> dict:
    """Square 0..count-1 in parallel (one task run each), then reduce two ways at once."""
    squares = square.map(range(count), offset=unmapped(offset))  # fan out: count task runs
    values = squares.result()  # fan in
    summed = total.submit(values)  # two independent branches run concurrently
    described = describe.submit(values)
    get_run_logger().info("mapped %d task runs", count)
    return {"total": summed.result(), "description": described.result()}
