"""Fan-out across pods: a parent flow starts one run of another Deployment per item.

Each `score` run is a FlowRun of its own, with its own pod, state and result; the parent
`score_all` starts them together with `arun_deployment`, waits for all of them and sums
their results. The children belong to the parent: `flowpod get fan-out-deployments-example`
lists them, deleting the parent deletes them, cancelling it cancels them, and a retried
parent finds the children it already started instead of starting more.

Run it with `kubectl apply -f examples/fan-out-deployments/`. Checked end to end by
tests/delivery/test_examples.py.
"""

from __future__ import annotations

import asyncio

from flowpod import arun_deployment, flow


@flow
def score(item: int) -> int:
    return item * item


@flow
async def score_all(count: int = 5) -> dict:
    runs = await asyncio.gather(*(arun_deployment("score", {"item": i})
                                  for i in range(count)))
    return {"total": sum(run.result() for run in runs),
            "children": [run.flow_run_name for run in runs]}
