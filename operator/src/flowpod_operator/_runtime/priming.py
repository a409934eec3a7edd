"""Start-up: Deployments, Jobs, Pods and FlowRuns listed into the Index before any decision.

Role: after a restart, the first decision about a run must already see its Job and Pod
(else it would create the Job again, or call a live run's pod lost). `prime` lists the
kinds (Jobs and Pods with the flowpod.io/flow-run selector kopf's watches use; each in
pages) into the Intake, and only then does the Reconciler let its workers decide. kopf's
own watches start at once and deliver the same objects again, which the Intake passes
over unless they are newer. FlowRuns are listed here too, last: kopf hands each object of
its listing through a per-object task pipeline (about 1 ms each on a quiet 2-core machine,
several under load), so a run created while the operator was down would otherwise wait for
every run listed before it; here a page costs one parse and a dictionary write per run.
Retried with a capped backoff while the API refuses, so a transient error delays the
start, never skips the listing.

Why not kopf's indexes, which hold every handler until their kinds are listed: kopf parks
one task per object on a shared condition until then and wakes every parked task each
time one finishes, so a start-up with 10,000 FlowRuns spent minutes in task switches
before its first decision (measured with tests/bench/operator_memory.py: 1,000 final runs
held a new run's Job back by about 30 s).
Callers: flowpod_operator.running.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from flowpod import contract

from flowpod_operator._runtime.intake import Intake
from flowpod_operator._runtime.kubeapi import KubeApi

__all__ = ["prime"]

_log = logging.getLogger("flowpod_operator.priming")


def _paths(namespaces: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(collection path, kind, label selector) of what is listed, per namespace or
    cluster-wide when `namespaces` is empty."""
    out: list[tuple[str, str, str | None]] = []
    for namespace in namespaces or (None,):
        scope = f"/namespaces/{namespace}" if namespace else ""
        out += [(contract.deployment_path(namespace), "Deployment", None),
                (f"/apis/batch/v1{scope}/jobs", "Job", contract.LABEL_FLOW_RUN),
                (f"/api/v1{scope}/pods", "Pod", contract.LABEL_FLOW_RUN),
                (contract.flowrun_path(namespace), "FlowRun", None)]
    return out


async def prime(api: KubeApi, intake: Intake, namespaces: Sequence[str], *,
                first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """List Deployments, Jobs and Pods into `intake`; retry until it succeeds."""
    feed = {"Deployment": intake.on_deployment, "Job": intake.on_job, "Pod": intake.on_pod,
            "FlowRun": intake.on_flowrun}
    delay = first_delay
    while True:
        try:
            for path, kind, selector in _paths(namespaces):
                async for page in api.list_pages(path, kind, selector=selector):
                    for body in page:
                        feed[kind](None, body)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an API refusal or a broken connection: try again
            _log.warning("listing at start-up failed; retrying", extra={
                "error": str(exc), "retryIn": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
