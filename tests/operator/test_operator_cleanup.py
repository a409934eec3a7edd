"""Clean-up of finished runs on the real plane: a Deployment's history limits and
ttlSecondsAfterFinished (the run's own, its Deployment's, the operator's
--ttl-seconds-after-finished) delete exactly the runs they should, never an unfinished one,
and the deleted runs' Jobs go with them."""

from __future__ import annotations

import time


import operator_harness as harness
from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
OPERATOR_TTL = 4
# This module's operator deletes finished runs after OPERATOR_TTL seconds by default.
OPERATOR_ARGS = ("--ttl-seconds-after-finished", str(OPERATOR_TTL))


def _names(api, ns: str, prefix: str) -> set[str]:
    return {r["metadata"]["name"] for r in api.get(contract.flowrun_path(ns))["items"]
            if r["metadata"]["name"].startswith(prefix)}


def _eventually(check, what: str, timeout: float = 20, explain=str):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what} not seen in {timeout}s\n{explain()}"
            return result
        time.sleep(0.2)


def _run(api, ns, name, deployment, proc, **spec) -> dict:
    api.create_flowrun(ns, name, deploymentName=deployment, **spec)
    return api.wait_final(ns, name, explain=proc.log_tail)


def test_history_limits_keep_the_newest_runs(api, flow_namespace, operator_proc):
    ns = flow_namespace
    # The Deployment's TTL (an hour) overrides the operator's: only the history limits act.
    api.create_deployment(ns, "kept", entrypoint=f"{CASES}:sleeps", parameters={"seconds": 0},
                          successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1,
                          ttlSecondsAfterFinished=3600)
    api.create_flowrun(ns, "h-long", deploymentName="kept", parameters={"seconds": 120})
    for name in ("h-ok-1", "h-ok-2", "h-ok-3", "h-bad-1", "h-bad-2", "h-ok-4"):
        bad = {"parameters": {"seconds": "not a number"}} if "bad" in name else {}
        final = _run(api, ns, name, "kept", operator_proc, **bad)
        assert harness.state_type(final) == ("FAILED" if bad else "COMPLETED")
    expected = {"h-long", "h-ok-3", "h-ok-4", "h-bad-2"}
    _eventually(lambda: _names(api, ns, "h-") == expected, f"exactly {sorted(expected)}",
                explain=lambda: f"{_names(api, ns, 'h-')}\n{operator_proc.log_tail()}")
    assert harness.state_type(api.flowrun(ns, "h-long")) not in harness.FINAL
    gone = {"h-ok-1", "h-ok-2", "h-bad-1"}
    # The garbage collector follows the Jobs' ownerReferences; on a plane started moments
    # ago it first has to discover the FlowRun resource (it re-discovers every 30 s).
    _eventually(lambda: not {j["metadata"]["labels"][contract.LABEL_FLOW_RUN]
                             for j in api.jobs(ns)} & gone, "the deleted runs' Jobs gone",
                timeout=75)
    api.cancel(ns, "h-long")


def test_ttl_of_the_run_then_the_deployment_then_the_operator(api, flow_namespace,
                                                              operator_proc):
    ns = flow_namespace
    api.create_deployment(ns, "short-lived", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 0}, ttlSecondsAfterFinished=2)
    api.create_deployment(ns, "plain", entrypoint=f"{CASES}:sleeps", parameters={"seconds": 0})
    own = _run(api, ns, "t-own", "short-lived", operator_proc, ttlSecondsAfterFinished=3600)
    by_deployment = _run(api, ns, "t-deployment", "short-lived", operator_proc)
    by_operator = _run(api, ns, "t-operator", "plain", operator_proc)
    ended = {n: contract.parse_time(r["status"]["endTime"]).timestamp() for n, r in (
        ("t-deployment", by_deployment), ("t-operator", by_operator))}
    seen: dict[str, float] = {}

    def all_gone() -> bool:
        present = _names(api, ns, "t-")
        for name in ended:
            if name not in present:
                seen.setdefault(name, time.time())
        return set(seen) == set(ended)

    _eventually(all_gone, "the runs past their TTL deleted",
                explain=lambda: f"{_names(api, ns, 't-')}\n{operator_proc.log_tail()}")
    assert seen["t-deployment"] - ended["t-deployment"] >= 2 - 1  # whole-second endTime
    assert seen["t-operator"] - ended["t-operator"] >= OPERATOR_TTL - 1
    assert own["metadata"]["name"] in _names(api, ns, "t-")
