"""`flowpod get RUN` shows the memory of each attempt (status.memory), so a raise after an
OOMKilled attempt (a Deployment's spec.retryPolicy) is visible next to the attempt number.
Hermetic: the detail table is rendered from a FlowRun body."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Console

from flowpod_operator.cli import _render

NOW = datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc)


def _detail(status: dict) -> str:
    run = {"metadata": {"name": "a", "namespace": "team",
                        "creationTimestamp": "2030-01-01T00:00:00Z"},
           "spec": {"deploymentName": "hello"}, "status": status}
    console = Console(width=200, record=True)
    console.print(_render.run_detail(run, NOW))
    return console.export_text()


def test_get_shows_the_memory_of_each_attempt():
    text = _detail({"attempt": 2, "memory": [
        {"attempt": 1, "limit": "100Mi", "request": "50Mi"},
        {"attempt": 2, "limit": "200Mi", "request": "100Mi"}]})
    (line,) = [line for line in text.splitlines() if line.startswith("Memory")]
    assert line.split(None, 1)[1].strip() == (
        "attempt 1: limit 100Mi, request 50Mi; attempt 2: limit 200Mi, request 100Mi")


def test_get_leaves_the_memory_out_when_none_was_set():
    assert not any(line.startswith("Memory") for line in _detail({"attempt": 1}).splitlines())
    text = _detail({"memory": [{"attempt": 1, "request": "64Mi"}]})
    assert "attempt 1: limit none, request 64Mi" in text
