"""SIGTERM sent to a real subprocess running a flow: Cancelling -> Cancelled plus
on_cancellation when cancellation was requested, Crashed plus on_crashed when not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import json, pathlib, sys, time
    import anyio
    from flowpod import flow, task
    from flowpod.engine import run_flow_run
    from flowpod.reporting import JsonJournalReporter

    workdir, style = pathlib.Path(sys.argv[1]), sys.argv[2]

    def hook(kind):
        def write(flow_obj, run, state):
            (workdir / f"hook-{kind}").write_text(state.name)
        return write

    hooks = dict(on_crashed=[hook("crashed")], on_cancellation=[hook("cancellation")],
                 on_completion=[hook("completion")], on_failure=[hook("failure")])

    @task
    def tick(i):
        time.sleep(0.01)
        return i

    @task
    async def atick(i):
        await anyio.sleep(0.01)
        return i

    @flow(**hooks)
    def sync_flow():
        (workdir / "started").write_text("yes")
        for i in range(2000):
            tick(i)

    @flow(**hooks)
    def mapped_flow():
        (workdir / "started").write_text("yes")
        tick.map(range(5000)).result()

    @flow(**hooks)
    async def async_flow():
        (workdir / "started").write_text("yes")
        for i in range(2000):
            await atick(i)

    @flow(**hooks)
    async def async_blocking_flow():
        (workdir / "started").write_text("yes")
        tick.map(range(5000)).result()  # blocks the body's own loop, not the run's

    flows = {"sync": sync_flow, "map": mapped_flow, "async": async_flow,
             "async_blocking": async_blocking_flow, "direct": sync_flow}

    def cancel_requested():
        return (workdir / "cancel-requested").exists()

    if style == "direct":
        sync_flow()  # a plain call: SIGTERM ends the process with 143
        sys.exit(0)
    reporter = JsonJournalReporter(workdir / "journal.jsonl")
    state = anyio.run(lambda: run_flow_run(flows[style], {}, reporter, cancel_requested))
    (workdir / "final.json").write_text(json.dumps(state.to_wire()))
    sys.exit(state.data.code if isinstance(state.data, SystemExit) else 0)
''')


def _run_and_terminate(tmp_path: Path, style: str, cancel: bool) -> int:
    script = tmp_path / "sigterm_flow.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), style],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "started").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the flow never started"
            time.sleep(0.01)
        time.sleep(0.1)  # let some task runs happen
        if cancel:
            (tmp_path / "cancel-requested").write_text("yes")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in output or "RunInterrupted" not in output, output
    return proc.returncode


def _journal_states(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    return [e["state"]["name"] for e in map(json.loads, lines) if e["event"] == "state"]


@pytest.mark.parametrize("style", ["sync", "map", "async", "async_blocking"])
def test_sigterm_with_cancellation_requested_cancels(tmp_path: Path, style: str) -> None:
    returncode = _run_and_terminate(tmp_path, style, cancel=True)
    assert returncode == 128 + signal.SIGTERM
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["type"] == "CANCELLED"
    assert _journal_states(tmp_path) == ["Pending", "Running", "Cancelling", "Cancelled"]
    assert (tmp_path / "hook-cancellation").read_text() == "Cancelled"
    assert not (tmp_path / "hook-crashed").exists()


@pytest.mark.parametrize("style", ["sync", "map", "async", "async_blocking"])
def test_sigterm_without_cancellation_request_crashes(tmp_path: Path, style: str) -> None:
    returncode = _run_and_terminate(tmp_path, style, cancel=False)
    assert returncode == 128 + signal.SIGTERM
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["type"] == "CRASHED" and "SIGTERM" in final["message"]
    assert _journal_states(tmp_path) == ["Pending", "Running", "Crashed"]
    assert (tmp_path / "hook-crashed").read_text() == "Crashed"
    assert not (tmp_path / "hook-cancellation").exists()


def test_sigterm_during_a_plain_flow_call_exits_143(tmp_path: Path) -> None:
    returncode = _run_and_terminate(tmp_path, "direct", cancel=False)
    assert returncode == 128 + signal.SIGTERM
    assert (tmp_path / "hook-crashed").read_text() == "Crashed"
