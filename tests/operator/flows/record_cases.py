"""Flows for tests/operator/test_operator_records.py: what a run's record keeps (large
parameters, nulls, results that are not kept, the last log lines of a run that ended badly).
Each runs inside a pod on the test node."""

from __future__ import annotations

import os
import signal
import time

from flowpod import flow


@flow
def measure(text: str) -> int:
    return len(text)


@flow
def greet(name: str | None = "world") -> str:
    return f"hello {name}"


@flow
def strict_greet(name: str = "world") -> str:
    return f"hello {name}"


@flow
def returns_a_set() -> set:
    return {1, 2, 3}


def _cleanup(flow_obj, flow_run, state) -> None:
    print(f"cleanup hook ran after {state.name}", flush=True)


@flow(on_cancellation=[_cleanup])
def waits_for_cancel(seconds: float = 120.0) -> None:
    print("waiting to be cancelled", flush=True)
    time.sleep(seconds)


@flow
def last_words() -> None:
    print("last words before the crash", flush=True)
    os._exit(3)  # no engine code runs: the operator writes Crashed from the pod's exit


@flow
def thirty_lines_then_sigkill() -> None:
    for number in range(1, 31):
        print(f"numbered line {number}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # killed outright: the operator writes Crashed
    time.sleep(30)
