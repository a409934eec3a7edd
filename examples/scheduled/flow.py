"""A scheduled flow: its Deployment starts a run every few seconds, one at a time.

`kubectl apply -f examples/scheduled/` creates only the Deployment; its interval schedule
makes the operator create a FlowRun at each due time (named from the due time), and
`concurrencyLimit: 1` keeps a run that comes due while another is still going waiting until
that one ends. `flowpod get deployments` shows the next due times; `kubectl delete -f
examples/scheduled/` stops the schedule and removes the runs it started.
"""

import time

from flowpod import flow, get_run_logger, task


@task
def take_reading(seconds: float) -> float:
    # Long enough that, without the limit, the next due run would overlap this one.
    time.sleep(seconds)
    return seconds


@flow
def heartbeat(seconds: float = 3.0) -> str:
    logger = get_run_logger()
    took = take_reading(seconds)
    logger.info("reading took %.1f s", took)
    return f"took {took:.1f} s"
