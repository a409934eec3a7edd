"""Failing example: a flow whose task raises, so the run ends Failed (not Crashed).

Run it with `kubectl apply -f examples/failing/`. The FlowRun ends Failed; its message names
the error, and `.status.taskRuns.failed` lists the failed task run with its message, while the
task that depended on it ends NotReady (it never ran). `kubectl wait
--for=condition=Succeeded=False flowrun/failing-example` returns once it has failed.
Checked end to end by tests/delivery/test_examples.py.
"""

from __future__ import annotations

from flowpod import flow, task


@task
def parse(record: str) -> int:
    return int(record)  # "not-a-number" raises ValueError


@task
def store(value: int) -> str:
    return f"stored {value}"


@flow
def failing(record: str = "not-a-number") -> str:
    """Parse a record, then store it; a bad record fails the parse and the run."""
    value = parse.submit(record)
    return store(value)
