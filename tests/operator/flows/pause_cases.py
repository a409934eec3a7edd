"""Flows that pause, suspend and wait for typed input, for tests/operator/test_operator_pausing.py.
Each runs inside a pod on the test node; side effects are counted in files under
$PAUSE_COUNTER_DIR (a volume the test reads), so a task that runs again is seen."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from flowpod import flow, pause_flow_run, suspend_flow_run, task


class Approval(BaseModel):
    approved: bool
    approver: str


def _count(name: str) -> int:
    """Append one line to the counter file `name`; return how many lines it has now."""
    directory = Path(os.environ["PAUSE_COUNTER_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / name).open("a") as counter:
        counter.write("ran\n")
    return len((directory / name).read_text().splitlines())


@task
def side_effect(name: str) -> int:
    return _count(name)


@flow(persist_result=True)
def suspends_for_approval(tag: str, timeout: int = 120) -> dict:
    before = side_effect(f"{tag}-before")
    approval = suspend_flow_run(wait_for_input=Approval, timeout=timeout)
    after = side_effect(f"{tag}-after")
    return {**approval.model_dump(), "before": before, "after": after}


@flow
def pauses_for_approval(timeout: int = 120) -> dict:
    approval = pause_flow_run(wait_for_input=Approval, timeout=timeout)
    return approval.model_dump()


@flow
def pauses_for_a_word(timeout: int = 120) -> str:
    return pause_flow_run(wait_for_input=str, timeout=timeout).upper()
