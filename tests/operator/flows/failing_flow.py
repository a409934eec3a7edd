"""A flow whose task raises, for tests/operator/test_engine_in_pod.py (ends Failed)."""

from flowpod import flow, task


@task
def explode() -> None:
    raise ValueError("the flow was told to fail")


@flow
def failing() -> None:
    explode()
