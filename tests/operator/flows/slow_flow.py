"""A flow that sleeps, so tests/operator/test_engine_in_pod.py can SIGTERM it mid-run."""

import time

from flowpod import flow


@flow
def slow(seconds: float = 60) -> str:
    time.sleep(seconds)
    return "woke up"
