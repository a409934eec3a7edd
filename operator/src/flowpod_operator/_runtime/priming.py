"""Start-up: Deployments, Jobs, Pods and FlowRuns listed into the Index before any decision.

Role: after a restart, the first decision about a run must already see its Job and Pod
(else it would create the Job again, or call a live run's pod lost). `prime` lists
Deployments, Jobs and Pods (Jobs and Pods with the flowpod.io/flow-run selector kopf's
watches use; each in pages) into the Intake, then the FlowRuns through their watches'
first listing (flowpod_operator._runtime.watching), and only then does the Reconciler let
its workers decide. kopf's watches of the other kinds start at once and deliver the same
objects again, which the Intake passes over unless they are newer; FlowRuns are listed
once, here, and the watch goes on from this listing. Retried with a capped backoff while
the API refuses, so a transient error delays the start, never skips the listing.

Why not kopf's indexes, which hold every handler until their kinds are listed: kopf parks
one task per object on a shared condition until then and wakes every parked task each
time one finishes, so a start-up with 10,000 FlowRuns spent minutes in task switches
before its first decision (measured with tests/bench/operator_memory.py: 1,000 final runs
held a new run's Job back by about 30 s).
Callers: flowpod_operator.running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import contextmanager
from typing import Iterator, Sequence

from flowpod import contract

from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.watching import FlowRunWatch

__all__ = ["prime"]

_log = logging.getLogger("flowpod_operator.priming")


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while listing, then the heap frozen.

    The listing allocates hundreds of thousands of objects that live on (a FlowRun is
    dozens of dicts and strings), and the collector would scan the whole growing heap again
    and again, finding nothing (parsed JSON holds no cycles): half the CPU of a start-up
    with 10,000 runs (measured with tests/bench/operator_memory.py). Frozen afterwards, the
    listed objects are also skipped by every later collection; they are still freed when
    no longer referenced.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _paths(namespaces: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(collection path, kind, label selector) of what is listed, per namespace or
    cluster-wide when `namespaces` is empty."""
    out: list[tuple[str, str, str | None]] = []
    for namespace in namespaces or (None,):
        scope = f"/namespaces/{namespace}" if namespace else ""
        out += [(contract.deployment_path(namespace), "Deployment", None),
                (f"/apis/batch/v1{scope}/jobs", "Job", contract.LABEL_FLOW_RUN),
                (f"/api/v1{scope}/pods", "Pod", contract.LABEL_FLOW_RUN)]
    return out


async def prime(api: KubeApi, intake: Intake, namespaces: Sequence[str],
                flowruns: Sequence[FlowRunWatch] = (), *,
                first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """List Deployments, Jobs and Pods into `intake`, then the FlowRuns of `flowruns`;
    retry until it succeeds."""
    feed = {"Deployment": intake.on_deployment, "Job": intake.on_job, "Pod": intake.on_pod}
    delay = first_delay
    loop = asyncio.get_running_loop()
    while True:
        try:
            started, counts = loop.time(), dict.fromkeys([*feed, "FlowRun"], 0)
            with _no_collection():
                for path, kind, selector in _paths(namespaces):
                    async for page in api.list_pages(path, kind, selector=selector):
                        counts[kind] += len(page)
                        for body in page:
                            feed[kind](None, body)
                for watch in flowruns:
                    await watch.relist()
                    counts["FlowRun"] += watch.listed
            _log.info("listed at start-up", extra={
                **counts, "seconds": round(loop.time() - started, 3)})
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an API refusal or a broken connection: try again
            _log.warning("listing at start-up failed; retrying", extra={
                "error": str(exc), "retryIn": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
