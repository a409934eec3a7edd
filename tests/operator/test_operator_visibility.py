"""The operator on the real plane: what a person sees while a run waits, and afterwards.

The run's log lines use the FlowRun's name. All runs start at once (the `runs` fixture) in
one namespace that only this module's operator watches.
"""

from __future__ import annotations

import pytest

CASES = "tests/operator/flows/operator_cases.py"


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    api.create_deployment(ns, "hello", entrypoint=f"{CASES}:hello")
    api.create_flowrun(ns, "quick", deploymentName="hello")


def test_the_runs_log_lines_use_the_flowrun_name(api, cluster, flow_namespace, runs):
    flowrun = api.wait_final(flow_namespace, "quick")
    assert flowrun["status"]["flowRunName"] == "quick"
    logs = cluster.kubectl("logs", "-n", flow_namespace, "job/quick-1").stdout
    assert "Flow run 'quick' entered state Running" in logs, logs
    assert "Flow run 'quick' entered state Completed" in logs, logs
    assert "Flow run 'hello-" not in logs, logs  # not the flow's name plus a random id
