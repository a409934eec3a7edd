"""Cancellation example: a slow flow to cancel while it runs.

Start it with `kubectl apply -f examples/cancellation/`, wait for Running
(`kubectl get flowrun cancellation-example -w`), then cancel it with either
`flowpod cancel cancellation-example` or
`kubectl patch flowrun cancellation-example --type merge -p '{"spec":{"cancel":true}}'`.
The operator sets Cancelling and deletes the pod; the engine gets SIGTERM, runs the
on_cancellation hook and reports Cancelled. Checked end to end by
tests/delivery/test_examples.py.
"""

from __future__ import annotations

import time

from flowpod import flow, get_run_logger, task


@task
def step(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


def say_cancelled(flow_obj, flow_run, state) -> None:
    # Hooks get (flow, flow run, state); they run in the pod before it exits.
    print(f"cancelled cleanly: {state.message}", flush=True)


@flow(on_cancellation=[say_cancelled])
def slow(steps: int = 600, seconds: float = 1.0) -> int:
    """Ten minutes of one-second steps: plenty of time to cancel it."""
    logger = get_run_logger()
    done = 0
    for i in range(steps):
        done = step(i, seconds) + 1
        logger.info("step %d of %d done", done, steps)
    return done
