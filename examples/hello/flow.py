"""Hello, flowpod: a flow with two tasks, run by `make demo` (examples/demo.sh).

`kubectl apply -f examples/hello/` creates the Deployment and a FlowRun; the operator makes
a Job, the engine runs this flow in its pod and writes Running, then Completed with the
result, onto the FlowRun.
"""

from flowpod import flow, get_run_logger, task


@task
def greet(name: str) -> str:
    return f"Hello, {name}!"


@task
def shout(text: str) -> str:
    return text.upper()


@flow
def hello(name: str = "world") -> str:
    logger = get_run_logger()
    message = shout(greet(name))
    logger.info(message)
    return message
