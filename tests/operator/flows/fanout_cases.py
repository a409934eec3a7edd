"""Flows that start runs of Deployments in their own pods (flowpod.run_deployment), for
tests/operator/test_operator_fanout.py and tests/bench/fanout.py. Each runs in a pod on
the test node."""

from __future__ import annotations

import asyncio
import os
import signal

from flowpod import arun_deployment, contract, flow


@flow
def add_one(x: int) -> int:
    return x + 1


@flow
def nothing() -> None:
    return None


@flow
async def fan_out(n: int = 20, deployment: str = "add-one") -> int:
    """Start n children together and sum their results."""
    children = await asyncio.gather(*(arun_deployment(deployment, {"x": i})
                                      for i in range(n)))
    return sum(child.result() or 0 for child in children)


@flow
async def fan_out_then_die(n: int = 20) -> int:
    """Start n children; on the first attempt SIGKILL the pod's own process once they all
    exist, so the next attempt must find them again."""
    started = await asyncio.gather(*(arun_deployment("add-one", {"x": i}, timeout=0)
                                     for i in range(n)))
    if os.environ.get(contract.ENV_ATTEMPT) == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    assert len({state.flow_run_name for state in started}) == n
    children = await asyncio.gather(*(arun_deployment("add-one", {"x": i})
                                      for i in range(n)))
    return sum(child.result() for child in children)


@flow
async def fan_out_sleepers(n: int = 3) -> None:
    """Children that run until cancelled, and a parent that waits for them."""
    await asyncio.gather(*(arun_deployment("sleeper", {"seconds": 300}) for _ in range(n)))


@flow
def sleeps(seconds: float = 300.0) -> float:
    import time

    time.sleep(seconds)
    return seconds
