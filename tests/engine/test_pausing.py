"""pause_flow_run (in-process wait, resume through the reporter, timeout) and
suspend_flow_run (ends the run Suspended; a re-run continues past it)."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from flowpod import flow, pause_flow_run, states, suspend_flow_run, task
from flowpod.reporting import InMemoryReporter


def _resume_when_paused(reporter: InMemoryReporter, action: str = "resume") -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 5
        while not reporter.state.is_paused() and time.monotonic() < deadline:
            time.sleep(0.005)
        getattr(reporter, action)()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_pause_waits_until_resumed_through_the_reporter(run) -> None:
    reporter = InMemoryReporter()
    steps = []

    @flow
    def waits() -> str:
        steps.append("before")
        pause_flow_run(timeout=5, poll_interval=0.01)
        steps.append("after")
        return "resumed"

    _resume_when_paused(reporter)
    state = run(waits, reporter=reporter)
    assert state.result() == "resumed" and steps == ["before", "after"]
    names = [s.name for s in reporter.history]
    assert names == ["Pending", "Running", "Paused", "Running", "Completed"]
    assert reporter.history[2].pause_timeout is not None


def test_pause_in_an_async_flow(run) -> None:
    reporter = InMemoryReporter()

    @flow
    async def waits() -> int:
        await pause_flow_run(timeout=5, poll_interval=0.01)
        return 7

    _resume_when_paused(reporter)
    assert run(waits, reporter=reporter).result() == 7


def test_pause_times_out_and_fails_the_run(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def never_resumed() -> None:
        pause_flow_run(timeout=0.1, poll_interval=0.02)

    started = time.monotonic()
    state = run(never_resumed, reporter=reporter)
    assert state.is_failed() and "not resumed" in state.message
    assert time.monotonic() - started < 2
    assert [s.name for s in reporter.history][-2:] == ["Paused", "Failed"]


def test_cancel_while_paused_ends_cancelled(run) -> None:
    reporter = InMemoryReporter()

    @flow
    def waits() -> None:
        pause_flow_run(timeout=5, poll_interval=0.01)

    _resume_when_paused(reporter, action="request_cancellation")
    state = run(waits, reporter=reporter)
    assert state.is_cancelled()
    assert [s.name for s in reporter.history][-3:] == ["Paused", "Cancelling", "Cancelled"]


def test_pause_outside_a_flow_or_in_a_task_is_refused() -> None:
    with pytest.raises(RuntimeError, match="inside a flow run"):
        pause_flow_run(timeout=1)

    @task
    def sneaky() -> None:
        pause_flow_run(timeout=1)

    @flow
    def f() -> None:
        sneaky()

    with pytest.raises(RuntimeError, match="inside a task run"):
        f()


def test_suspend_ends_the_run_and_a_rerun_continues(run, deps) -> None:
    calls = []

    @task(persist_result=True)
    def step(name: str) -> str:
        calls.append(name)
        return name

    @flow
    def two_phase() -> list:
        first = step("one")
        suspend_flow_run(timeout=60)
        return [first, step("two")]

    reporter = InMemoryReporter()
    state = run(two_phase, reporter=reporter, flow_run_id="susp-1", deps=deps)
    assert state.is_paused() and state.name == "Suspended"
    assert state.pause_timeout is not None and calls == ["one"]
    assert reporter.state.name == "Suspended"
    # Resumed: the operator starts the same flow run again (Suspended -> Running).
    again = InMemoryReporter(initial=states.Suspended())
    final = run(two_phase, reporter=again, flow_run_id="susp-1", deps=deps)
    assert final.result() == ["one", "two"] and calls == ["one", "two"]


def test_suspend_in_an_async_flow_and_from_a_direct_call() -> None:
    @flow
    async def suspends() -> None:
        await suspend_flow_run()

    async def main() -> states.State:
        return await suspends(return_state=True)

    assert anyio.run(main).name == "Suspended"
