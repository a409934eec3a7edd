"""/metrics on the real plane, the engine really running in pods: while runs complete, fail
and crash (OOM), the scrape's numbers move as they should: runs by state, transitions,
crashes by cause, submission latency, run durations. The output passes `promtool check
metrics` (flowpod_devcluster builds promtool with the plane's binaries)."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.cluster
CASES = "tests/operator/flows/operator_cases.py"


def _scrape(port: int) -> tuple[str, dict[tuple[str, tuple], float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_runs_complete_fail_and_crash(operators, api, flow_namespace, cluster):
    ns = flow_namespace
    proc = operators()
    api.create_deployment(ns, "hello", entrypoint=f"{CASES}:hello")
    api.create_deployment(ns, "bad", entrypoint=f"{CASES}:raises")
    api.create_deployment(ns, "hog", entrypoint=f"{CASES}:hog_memory",
                          podTemplate={"resources": {"limits": {"memory": "64Mi"}}})
    _, before = _scrape(proc.health_port)
    for run, deployment in (("ok-1", "hello"), ("ok-2", "hello"), ("bad-1", "bad"),
                            ("hog-1", "hog")):
        api.create_flowrun(ns, run, deploymentName=deployment)
    ends = {run: api.wait_final(ns, run, timeout=90, explain=proc.log_tail)["status"]
            ["state"]["type"] for run in ("ok-1", "ok-2", "bad-1", "hog-1")}
    assert ends == {"ok-1": "COMPLETED", "ok-2": "COMPLETED", "bad-1": "FAILED",
                    "hog-1": "CRASHED"}
    text, after = _scrape(proc.health_port)

    def moved(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    assert _get(after, "flowpod_flowruns", namespace=ns, deployment="hello",
                state="COMPLETED") == 2
    assert _get(after, "flowpod_flowruns", namespace=ns, deployment="hog",
                state="CRASHED") == 1
    assert moved("flowpod_flowrun_transitions_total", from_state="RUNNING",
                 to_state="COMPLETED") == 2
    assert moved("flowpod_flowrun_transitions_total", from_state="RUNNING",
                 to_state="FAILED") == 1
    assert moved("flowpod_flowrun_crashes_total", reason="OOMKilled") == 1
    assert moved("flowpod_submission_latency_seconds_count") == 4
    # Submission is fast on an idle plane; the sum bounds the mean, not a timing assertion.
    assert moved("flowpod_submission_latency_seconds_sum") < 4 * 5.0
    assert moved("flowpod_flowrun_duration_seconds_count", deployment="hello",
                 state="COMPLETED") == 2
    assert moved("flowpod_reconcile_duration_seconds_count") > 0
    assert "flowpod_api_errors" in text and "ok-1" not in text  # no run names as labels
    check = subprocess.run([str(cluster.bin_dir / "promtool"), "check", "metrics"],
                           input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
