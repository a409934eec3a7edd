"""An async flow with a flow_run_name template, run by tests/operator/test_engine_in_pod.py
in a pod: its log lines carry the FlowRun's name, and it blocks on a future."""

from flowpod import flow, task


@task
def greet(who: str) -> str:
    return f"hello {who}"


@flow(flow_run_name="greeting-{who}")
async def named(who: str = "world") -> str:
    return greet.submit(who).result()
