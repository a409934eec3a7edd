"""The operator on the real plane: what a person sees while a run waits, and afterwards.

A run that cannot start says why within seconds (its Pending message and a Warning Event):
an image that cannot be pulled, a nodeSelector no node matches, a missing ServiceAccount.
Events come in the order of the run's transitions, a Deployment's runs carry its label, and
the run's log lines use the FlowRun's name. All runs start at once (the `runs` fixture) in
one namespace that only this module's operator watches.
"""

from __future__ import annotations

import json
import time

import pytest

from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
BAD_IMAGE = "registry.invalid/flowpod/nope:1"


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    # Long pending timeouts: these runs must still be waiting when the tests look.
    api.create_deployment(ns, "hello", entrypoint=f"{CASES}:hello")
    api.create_deployment(ns, "no-image", entrypoint=f"{CASES}:hello", image=BAD_IMAGE,
                          pendingTimeoutSeconds=600)
    api.create_deployment(ns, "no-node", entrypoint=f"{CASES}:hello",
                          pendingTimeoutSeconds=600,
                          podTemplate={"nodeSelector": {"flowpod.io/no-such-node": "x"}})
    api.create_deployment(ns, "no-account", entrypoint=f"{CASES}:hello",
                          pendingTimeoutSeconds=600,
                          podTemplate={"serviceAccountName": "nobody"})
    for run, deployment in (("bad-image", "no-image"), ("unschedulable", "no-node"),
                            ("no-account", "no-account"), ("quick", "hello")):
        api.create_flowrun(ns, run, deploymentName=deployment)


def _wait_message(api, ns, name, prefix, operator_proc, timeout=15.0) -> dict:
    return api.wait_flowrun(
        ns, name, lambda f: (f.get("status") or {}).get("state", {}).get(
            "message", "").startswith(prefix), what=f"a state message starting {prefix!r}",
        timeout=timeout, explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))


def _warnings(api, ns, name) -> list[dict]:
    return [e for e in api.events(ns, name) if e["type"] == "Warning"]


def _wait_warning(api, ns, name, timeout=10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (found := _warnings(api, ns, name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_an_unpullable_image_is_named_within_seconds(api, flow_namespace, operator_proc,
                                                     runs):
    started = time.monotonic()
    flowrun = api.wait_flowrun(
        flow_namespace, "bad-image",
        lambda f: (f.get("status") or {}).get("state", {}).get("message", "").split(":")[0]
        in ("ErrImagePull", "ImagePullBackOff"), what="an image-pull message", timeout=15,
        explain=lambda: operator_proc.log_tail(needle='"bad-image"'))
    assert time.monotonic() - started < 10
    state = flowrun["status"]["state"]
    assert state["type"] == "PENDING"
    assert f'"{BAD_IMAGE}"' in state["message"]
    (warning,) = _wait_warning(api, flow_namespace, "bad-image")
    assert warning["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert BAD_IMAGE in warning["message"]
    # The kubelet keeps alternating ErrImagePull and ImagePullBackOff; that is one problem:
    # one history entry and one Warning, not one per retry.
    time.sleep(4)
    flowrun = api.flowrun(flow_namespace, "bad-image")
    pulls = [h for h in flowrun["status"]["stateHistory"] if BAD_IMAGE in h["message"]]
    assert len(pulls) == 1, flowrun["status"]["stateHistory"]
    assert len(_warnings(api, flow_namespace, "bad-image")) == 1


def test_an_unschedulable_pod_shows_the_schedulers_message(api, flow_namespace,
                                                            operator_proc, runs):
    flowrun = _wait_message(api, flow_namespace, "unschedulable", "Unschedulable: ",
                            operator_proc)
    message = flowrun["status"]["state"]["message"]
    assert "no node can run pod unschedulable-1-" in message
    assert "node(s) didn't match" in message  # the scheduler's own words
    (warning,) = _wait_warning(api, flow_namespace, "unschedulable")
    assert warning["reason"] == "Unschedulable"


def test_a_missing_service_account_is_said(api, flow_namespace, operator_proc, runs):
    flowrun = _wait_message(api, flow_namespace, "no-account", "ServiceAccountNotFound: ",
                            operator_proc)
    message = flowrun["status"]["state"]["message"]
    assert f'the ServiceAccount "nobody" does not exist in namespace {flow_namespace}' in message
    assert "spec.podTemplate.serviceAccountName" in message
    (warning,) = _wait_warning(api, flow_namespace, "no-account")
    assert warning["reason"] == "ServiceAccountNotFound"


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


def test_runs_of_a_deployment_carry_its_label(api, cluster, flow_namespace, operator_proc,
                                              runs):
    ns = flow_namespace
    label = contract.LABEL_DEPLOYMENT
    api.wait_flowrun(ns, "quick", lambda f: f["metadata"].get("labels", {}).get(label)
                     == "hello", what=f"the label {label}=hello",
                     explain=lambda: operator_proc.log_tail(needle='"quick"'))
    listed = cluster.kubectl("get", "fr", "-n", ns, "-l", f"{label}=hello",
                             "-o", "jsonpath={.items[*].metadata.name}")
    assert listed.stdout.split() == ["quick"]
    listed = cluster.kubectl("get", "fr", "-n", ns, "-l", f"{label}=no-image",
                             "-o", "jsonpath={.items[*].metadata.name}")
    assert listed.stdout.split() == ["bad-image"]


def test_the_runs_log_lines_use_the_flowrun_name(api, cluster, flow_namespace, runs):
    flowrun = api.wait_final(flow_namespace, "quick")
    assert flowrun["status"]["flowRunName"] == "quick"
    logs = cluster.kubectl("logs", "-n", flow_namespace, "job/quick-1").stdout
    assert "Flow run 'quick' entered state Running" in logs, logs
    assert "Flow run 'quick' entered state Completed" in logs, logs
    assert "Flow run 'hello-" not in logs, logs  # not the flow's name plus a random id
