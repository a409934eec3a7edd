"""A flow whose task runs compute on a Dask cluster, run by tests/operator/test_operator_dask.py.

Its Deployment names the scheduler through FLOWPOD_DASK_ADDRESS (DaskTaskRunner() has no
address of its own). Each task run reports the process and the pod role it ran in, so the
test can tell the Dask worker's pod from the flow-run pod.
"""

import os

from flowpod import flow, task
from flowpod.task_runners import DaskTaskRunner


@task
def where(x: int) -> tuple[int, int, str]:
    return x * x, os.getpid(), os.environ.get("POD_ROLE", "")


@task
def refuse() -> None:
    raise ValueError("this task fails on the Dask worker")


@flow(task_runner=DaskTaskRunner())
def on_dask(n: int = 20) -> dict:
    results = where.map(range(n)).result()
    refused = refuse.submit().wait()  # looked at, so the flow still completes
    return {"sum": sum(value for value, _, _ in results),
            "pids": sorted({pid for _, pid, _ in results}),
            "roles": sorted({role for _, _, role in results}),
            "flow": [os.getpid(), os.environ.get("POD_ROLE", "")],
            "refused": refused.message}
