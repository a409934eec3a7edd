"""Retries example: a task that fails twice before it succeeds, and a flow that still Completes.

Run it on a cluster with `kubectl apply -f examples/retries/`, or locally with
`python -m flowpod.engine --entrypoint examples/retries/flow.py:flaky_pipeline`.
The FlowRun ends Completed; the pod's log shows the two failed attempts and the retries
(task state Retrying, then Completed). Checked end to end by tests/delivery/test_examples.py.
"""

from __future__ import annotations

from flowpod import flow, get_run_logger, task

# Attempts are counted per process: retries happen inside the same pod, so a module-level
# counter is enough to make the first attempts fail deterministically.
_attempts: dict[str, int] = {}


@task(retries=3, retry_delay_seconds=[0.2, 0.5, 1.0])
def fetch(source: str, failures: int) -> str:
    """Pretend to call a flaky service: the first `failures` attempts raise."""
    _attempts[source] = _attempts.get(source, 0) + 1
    if _attempts[source] <= failures:
        raise ConnectionError(f"{source} unavailable (attempt {_attempts[source]})")
    return f"{source}: ok after {_attempts[source]} attempts"


@task
def combine(parts: list[str]) -> str:
    return "; ".join(parts)


@flow(log_prints=True)
def flaky_pipeline(failures: int = 2, sources: list[str] = ["orders", "users"]) -> dict:
    """Fetch every source (each fails `failures` times first), then combine the answers."""
    logger = get_run_logger()
    parts = [fetch(source, failures) for source in sources]
    summary = combine(parts)
    logger.info("combined: %s", summary)
    return {"summary": summary, "attempts": dict(_attempts)}
