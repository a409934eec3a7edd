"""The operator SIGKILLed while runs are Pending and Running, then restarted: every run
ends correctly, a cancel made while it was down ends within grace + a small bound, and no
Job is ever made twice (names are deterministic; AlreadyExists is handled)."""

from __future__ import annotations

import time

from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
GRACE = 3


def _name(flowrun: dict) -> str | None:
    return ((flowrun.get("status") or {}).get("state") or {}).get("name")


def test_restart_mid_run_ends_every_run_once(operators, api, flow_namespace):
    ns = flow_namespace
    api.create_deployment(ns, "sleeper", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 4})
    api.create_deployment(ns, "stubborn", entrypoint=f"{CASES}:ignores_sigterm",
                          cancellationGracePeriodSeconds=GRACE)
    api.create_deployment(ns, "nowhere", entrypoint=f"{CASES}:hello", pendingTimeoutSeconds=8,
                          podTemplate={"nodeSelector": {"flowpod.io/test": "no-such-node"}})
    first = operators()
    for name in ("running-a", "running-b"):
        api.create_flowrun(ns, name, deploymentName="sleeper")
    api.create_flowrun(ns, "stubborn", deploymentName="stubborn")
    api.create_flowrun(ns, "pending", deploymentName="nowhere")

    def wait(name: str, ready, what: str, timeout: float = 30) -> dict:
        return api.wait_flowrun(ns, name, ready, what=what, timeout=timeout,
                                explain=lambda: first.log_tail(needle=f'"{name}"'))

    for name in ("running-a", "running-b", "stubborn"):
        wait(name, lambda f: _name(f) == "Running", "Running")
    wait("pending", lambda f: _name(f) == "Pending" and f["status"].get("podName"),
         "Pending with a pod")

    first.kill()
    api.create_flowrun(ns, "while-down", deploymentName="sleeper", parameters={"seconds": 1})
    api.cancel(ns, "stubborn")
    time.sleep(1.0)
    second = operators()
    restarted = time.monotonic()

    expected = {"running-a": "Completed", "running-b": "Completed", "while-down": "Completed",
                "stubborn": "Cancelled", "pending": "Crashed"}
    for name, state in expected.items():
        flowrun = api.wait_final(ns, name, timeout=40,
                                 explain=lambda n=name: second.log_tail(needle=f'"{n}"'))
        assert _name(flowrun) == state, (name, flowrun["status"])
        if name == "stubborn":
            # Cancelling began after the restart; it ended within grace + a small bound.
            assert time.monotonic() - restarted < GRACE + 12
            assert flowrun["status"]["exitCode"] == 137
        if name == "pending":
            assert flowrun["status"]["state"]["message"].startswith("Unschedulable: ")

    jobs = api.jobs(ns)
    by_run: dict[str, list[str]] = {}
    for job in jobs:
        by_run.setdefault(job["metadata"]["labels"][contract.LABEL_FLOW_RUN], []).append(
            job["metadata"]["name"])
    assert {run: sorted(names) for run, names in by_run.items()} == {
        name: [f"{name}-1"] for name in expected}
    # Every attempt Job was created exactly once, by one of the two operators.
    created = first.log_text().count('"created Job"') + second.log_text().count(
        '"created Job"')
    assert created == len(expected)
    assert second.stop() == 0
