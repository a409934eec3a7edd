"""Flows that start runs of Deployments in their own pods (flowpod.run_deployment), for
tests/operator/test_operator_fanout.py and tests/bench/fanout.py. Each runs in a pod on
the test node."""

from __future__ import annotations

import asyncio

from flowpod import arun_deployment, flow


@flow
def add_one(x: int) -> int:
    return x + 1


@flow
def nothing(x: int = 0) -> None:
    return None


@flow
async def fan_out(n: int = 20, deployment: str = "add-one") -> int:
    """Start n children together and sum their results."""
    children = await asyncio.gather(*(arun_deployment(deployment, {"x": i})
                                      for i in range(n)))
    return sum(child.result() or 0 for child in children)


@flow
def add_one_slowly(x: int, seconds: float = 4.0) -> int:
    import time

    time.sleep(seconds)  # long enough for a test to kill the waiting parent
    return x + 1


@flow
async def fan_out_sleepers(n: int = 3) -> None:
    """Children that run until cancelled, and a parent that waits for them."""
    await asyncio.gather(*(arun_deployment("sleeper", {"seconds": 300}) for _ in range(n)))


@flow
def sleeps(seconds: float = 300.0) -> float:
    import time

    time.sleep(seconds)
    return seconds
