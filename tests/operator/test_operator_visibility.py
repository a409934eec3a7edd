"""The operator on the real plane: what a person sees while a run waits, and afterwards.

Events come in the order of the run's transitions, and the run's log lines use the
FlowRun's name. All runs start at once (the `runs` fixture) in one namespace that only this
module's operator watches.
"""

from __future__ import annotations

import json
import time

import pytest

CASES = "tests/operator/flows/operator_cases.py"


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    api.create_deployment(ns, "hello", entrypoint=f"{CASES}:hello")
    api.create_flowrun(ns, "quick", deploymentName="hello")


def _quick_events(api, cluster, ns) -> tuple[dict, list[dict]]:
    flowrun = api.wait_final(ns, "quick")
    assert flowrun["status"]["state"]["type"] == "COMPLETED"
    history = [h["name"] for h in flowrun["status"]["stateHistory"]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                                 "involvedObject.name=quick", "-o", "json")
        items = json.loads(listed.stdout)["items"]
        if len(items) >= len(history):
            break
        time.sleep(0.2)
    return flowrun, items


def test_events_come_in_the_order_of_the_transitions(api, cluster, flow_namespace, runs):
    ns = flow_namespace
    flowrun, items = _quick_events(api, cluster, ns)
    history = [h["name"] for h in flowrun["status"]["stateHistory"]]
    assert history == ["Scheduled", "Pending", "Running", "Completed"]
    # Scheduled and Pending are one write, Running and Completed milliseconds apart: only
    # microsecond event times keep them apart.
    assert [e["reason"] for e in items] == history  # the API server's own order (by name)
    times = [e.get("eventTime") or "" for e in items]
    assert all(times) and times == sorted(times) and len(set(times)) == len(times)
    by_time = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                              "involvedObject.name=quick", "--sort-by=.eventTime",
                              "-o", "jsonpath={.items[*].reason}")
    assert by_time.stdout.split() == history
    shown = cluster.kubectl("events", "-n", ns, "--for", "flowrun/quick", "-o", "json")
    assert [e["reason"] for e in json.loads(shown.stdout)["items"]] == history
    table = cluster.kubectl("events", "-n", ns, "--for", "flowrun/quick").stdout
    positions = [table.index(f" {reason} ") for reason in history]
    assert positions == sorted(positions), table


def test_the_runs_log_lines_use_the_flowrun_name(api, cluster, flow_namespace, runs):
    flowrun = api.wait_final(flow_namespace, "quick")
    assert flowrun["status"]["flowRunName"] == "quick"
    logs = cluster.kubectl("logs", "-n", flow_namespace, "job/quick-1").stdout
    assert "Flow run 'quick' entered state Running" in logs, logs
    assert "Flow run 'quick' entered state Completed" in logs, logs
    assert "Flow run 'hello-" not in logs, logs  # not the flow's name plus a random id
