"""Cancellation (`spec.cancel: true`) on the real plane: in Scheduled, Pending and Running,
and with an engine that ignores SIGTERM (SIGKILL after the grace period, then Cancelled).
The runs of this module proceed concurrently in one namespace."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
GRACE = 2


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    api.create_deployment(ns, "sleeper", entrypoint=f"{CASES}:sleeps",
                          cancellationGracePeriodSeconds=GRACE)
    api.create_deployment(ns, "stubborn", entrypoint=f"{CASES}:ignores_sigterm",
                          cancellationGracePeriodSeconds=GRACE)
    # No node has this label: its pod stays Pending (unschedulable).
    api.create_deployment(ns, "nowhere", entrypoint=f"{CASES}:hello",
                          podTemplate={"nodeSelector": {"flowpod.io/test": "no-such-node"}})
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    api.create_flowrun(ns, "in-scheduled", deploymentName="sleeper",
                       scheduledTime=contract.format_time(later, fraction=False))
    api.create_flowrun(ns, "in-pending", deploymentName="nowhere")
    api.create_flowrun(ns, "in-running", deploymentName="sleeper")
    api.create_flowrun(ns, "ignores-sigterm", deploymentName="stubborn")


@pytest.fixture
def waiter(api, flow_namespace, operator_proc, runs):
    def wait(name: str, ready, what: str, timeout: float = 30) -> dict:
        return api.wait_flowrun(flow_namespace, name, ready, what=what, timeout=timeout,
                                explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))
    return wait


def _named(name: str):
    return lambda f: ((f.get("status") or {}).get("state") or {}).get("name") == name


def _history(flowrun: dict) -> list[str]:
    return [entry["name"] for entry in flowrun["status"]["stateHistory"]]


def test_cancel_in_scheduled(waiter, api, flow_namespace):
    waiter("in-scheduled", _named("Scheduled"), "Scheduled")
    api.cancel(flow_namespace, "in-scheduled")
    flowrun = waiter("in-scheduled", _named("Cancelled"), "Cancelled")
    assert _history(flowrun) == ["Scheduled", "Cancelled"]
    assert api.jobs(flow_namespace, f"{contract.LABEL_FLOW_RUN}=in-scheduled") == []


def test_cancel_in_pending(waiter, api, flow_namespace):
    waiter("in-pending", lambda f: _named("Pending")(f) and f["status"].get("podName"),
           "Pending with a pod")
    api.cancel(flow_namespace, "in-pending")
    flowrun = waiter("in-pending", _named("Cancelled"), "Cancelled")
    assert _history(flowrun)[-1] == "Cancelled" and "Running" not in _history(flowrun)
    deadline = time.monotonic() + 10
    while api.pods(flow_namespace, f"{contract.LABEL_FLOW_RUN}=in-pending"):
        assert time.monotonic() < deadline, "the pending pod was not removed"
        time.sleep(0.2)


def test_cancel_in_running(waiter, api, flow_namespace):
    waiter("in-running", _named("Running"), "Running")
    started = time.monotonic()
    api.cancel(flow_namespace, "in-running")
    flowrun = waiter("in-running", _named("Cancelled"), "Cancelled")
    assert time.monotonic() - started < GRACE + 5
    assert _history(flowrun)[-3:] == ["Running", "Cancelling", "Cancelled"]
    cancelling = flowrun["status"]["stateHistory"][-2]
    assert cancelling["message"].startswith("Cancellation requested (spec.cancel): stopping pod")


def test_cancel_with_an_engine_that_ignores_sigterm(waiter, api, flow_namespace):
    waiter("ignores-sigterm", _named("Running"), "Running")
    time.sleep(0.5)  # let the flow install SIG_IGN
    started = time.monotonic()
    api.cancel(flow_namespace, "ignores-sigterm")
    flowrun = waiter("ignores-sigterm", _named("Cancelled"), "Cancelled", timeout=GRACE + 20)
    elapsed = time.monotonic() - started
    assert GRACE - 0.5 <= elapsed < GRACE + 10, elapsed  # SIGKILL came only after the grace
    assert _history(flowrun)[-2:] == ["Cancelling", "Cancelled"]
    assert flowrun["status"]["state"]["message"].endswith("stopped (exit code 137)")
    assert flowrun["status"]["exitCode"] == 137
