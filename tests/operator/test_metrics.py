"""The operator's metrics (flowpod_operator._runtime.metrics and .serving), hermetic: states
appended to a run's history count as transitions, exactly once; a crash counts under a
bounded cause; gauges come from the Index at scrape time; submission latency runs from the
first sight of a run to its Job; /metrics and /healthz are served on one port."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowpod_operator._runtime import serving
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.metrics import CRASH_CATEGORIES, Metrics, crash_category


def _entry(kind: str, second: int) -> dict:
    return {"type": kind, "name": kind.title(), "timestamp": f"2026-01-01T00:00:{second:02d}Z"}


def _run(name: str, *kinds: str, deployment: str = "etl", **status) -> dict:
    history = [_entry(kind, i) for i, kind in enumerate(kinds)]
    body = {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
            "spec": {"deploymentName": deployment}, "status": dict(status)}
    if history:
        body["status"].update(state=history[-1], stateHistory=history)
    return body


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_appended_states_count_once_and_a_first_sight_counts_nothing():
    metrics = Metrics(lambda: [])
    seen = _run("a", "SCHEDULED", "PENDING")
    metrics.observe(None, seen)  # a restart's first sight: a baseline
    assert _value(metrics, "flowpod_flowrun_transitions_total",
                  from_state="SCHEDULED", to_state="PENDING") is None
    later = _run("a", "SCHEDULED", "PENDING", "RUNNING", "COMPLETED",
                 startTime="2026-01-01T00:00:02Z", endTime="2026-01-01T00:01:32Z")
    metrics.observe(seen, later)
    metrics.observe(later, later)  # the same body again (a resync) adds nothing
    assert _value(metrics, "flowpod_flowrun_transitions_total",
                  from_state="PENDING", to_state="RUNNING") == 1
    assert _value(metrics, "flowpod_flowrun_transitions_total",
                  from_state="RUNNING", to_state="COMPLETED") == 1
    assert _value(metrics, "flowpod_flowrun_duration_seconds_sum",
                  deployment="etl", state="COMPLETED") == 90
    assert _value(metrics, "flowpod_flowrun_duration_seconds_count",
                  deployment="etl", state="COMPLETED") == 1


def test_a_crash_counts_under_its_cause():
    metrics = Metrics(lambda: [])
    running = _run("a", "RUNNING")
    metrics.observe(running, _run("a", "RUNNING", "CRASHED", reason="OOMKilled"))
    assert _value(metrics, "flowpod_flowrun_crashes_total", reason="OOMKilled") == 1


@pytest.mark.parametrize("reason, category", [
    ("OOMKilled", "OOMKilled"), ("Evicted", "Evicted"), ("EvictionByEvictionAPI", "Evicted"),
    ("ErrImagePull", "ImagePull"), ("ImagePullBackOff", "ImagePull"),
    ("DeadlineExceeded", "DeadlineExceeded"), ("PodDeleted", "PodDeleted"),
    ("DeletionByPodGC", "NodeLost"), ("NodeLost", "NodeLost"), ("Error", "ExitCode"),
    ("PendingTimeout", "Other"), (None, "Other")])
def test_crash_reasons_fold_into_a_bounded_set(reason, category):
    assert crash_category(reason) == category and category in CRASH_CATEGORIES


def test_gauges_come_from_the_index_at_scrape_time():
    index = Index()
    metrics = Metrics(index.flowrun_items)
    index.put_flowrun(_run("a", "RUNNING"))
    index.put_flowrun(_run("b", "RUNNING"))
    index.put_flowrun(_run("c", "SCHEDULED", deployment=""))
    waiting = _run("d", "SCHEDULED")
    waiting["status"]["state"]["name"] = "AwaitingConcurrencySlot"
    index.put_flowrun(waiting)
    assert _value(metrics, "flowpod_flowruns", namespace="ns", deployment="etl",
                  state="RUNNING") == 2
    assert _value(metrics, "flowpod_flowruns", namespace="ns", deployment="",
                  state="SCHEDULED") == 1
    assert _value(metrics, "flowpod_flowruns_awaiting_slot", namespace="ns",
                  deployment="etl") == 1
    index.remove_flowrun(("ns", "a"))
    assert _value(metrics, "flowpod_flowruns", namespace="ns", deployment="etl",
                  state="RUNNING") == 1


def test_submission_latency_runs_from_first_sight_to_the_job():
    now = [100.0]
    metrics = Metrics(lambda: [], clock=lambda: now[0])
    metrics.observe(None, _run("a"))            # a new run, from a watch event
    # Listed at start-up, not submitted yet (created while the operator started, or while
    # it was down): its wait for a Job is a submission too, and counts from first sight.
    metrics.observe(None, _run("b"))
    # Listed at start-up, submitted by an earlier operator: no clock.
    metrics.observe(None, _run("c", "SCHEDULED", "PENDING"))
    now[0] = 100.25
    metrics.job_created(("ns", "a"))
    metrics.job_created(("ns", "b"))
    metrics.job_created(("ns", "c"))
    metrics.job_created(("ns", "a"))            # a second attempt's Job is not a submission
    assert _value(metrics, "flowpod_submission_latency_seconds_count") == 2
    assert _value(metrics, "flowpod_submission_latency_seconds_sum") == pytest.approx(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_and_metrics_are_served_on_one_port():
    async def scenario() -> tuple[int, int, str]:
        index = Index()
        index.put_flowrun(_run("a", "RUNNING"))
        metrics = Metrics(index.flowrun_items)
        metrics.api_errors.labels("PATCH").inc()
        ready, port = asyncio.Event(), _free_port()
        runner = await serving.start_endpoints("127.0.0.1", port, ready, metrics)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                before = (await http.get("/healthz")).status_code
                ready.set()
                after = (await http.get("/healthz")).status_code
                scrape = await http.get("/metrics")
                assert scrape.headers["content-type"].startswith("text/plain")
                return before, after, scrape.text
        finally:
            await runner.cleanup()

    before, after, text = asyncio.run(scenario())
    assert (before, after) == (503, 200)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["flowpod_flowruns"].samples
    assert sample.labels == {"namespace": "ns", "deployment": "etl", "state": "RUNNING"}
    assert sample.value == 1
    assert [s.value for s in families["flowpod_api_errors"].samples
            if s.name.endswith("_total")] == [1]
