"""Reporters: in-memory and journal reporters, the one acceptance rule, batched task-run
summaries, and how the engine reacts when the backend refuses a state."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from flowpod import Abort, flow, states, task
from flowpod.contract import MAX_LISTED_RUNS
from flowpod.reporting import (
    InMemoryReporter,
    JsonJournalReporter,
    Reporter,
    append_journal_control,
)


@task
def ok(i: int) -> int:
    return i


@task
def bad(i: int) -> None:
    raise ValueError(f"bad {i}")


def test_reporters_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(InMemoryReporter(), Reporter)
    assert isinstance(JsonJournalReporter(tmp_path / "j.jsonl"), Reporter)


def test_in_memory_reporter_enforces_the_table() -> None:
    reporter = InMemoryReporter()

    async def scenario() -> None:
        await reporter.propose_state(states.Running())
        await reporter.propose_state(states.Completed())
        with pytest.raises(Abort, match="already ended") as refused:
            await reporter.propose_state(states.Running())
        assert refused.value.state.is_completed()

    anyio.run(scenario)
    pending = InMemoryReporter()
    with pytest.raises(Abort, match="PENDING -> PAUSED"):
        anyio.run(pending.propose_state, states.Paused())


def test_in_memory_reporter_follows_the_one_acceptance_rule() -> None:
    # As on a FlowRun: the engine's own Cancelling is a no-op on top of an earlier one.
    reporter = InMemoryReporter(states.Cancelling("user asked"))
    assert anyio.run(reporter.propose_state, states.Cancelling()).message == "user asked"
    assert len(reporter.history) == 1
    with pytest.raises(Abort, match="being cancelled"):
        anyio.run(reporter.propose_state, states.Running())


def test_summaries_are_flushed_in_batches_not_per_task(run, deps) -> None:
    reporter = InMemoryReporter()

    @flow
    def many() -> None:
        for i in range(300):
            ok(i)
            if i % 100 == 0:
                time.sleep(0.06)  # a flush interval (0.05 s) passes now and then
        bad.map(range(MAX_LISTED_RUNS + 5))

    state = run(many, reporter=reporter, deps=deps)
    assert state.is_failed()  # unhandled task failures
    assert 2 <= len(reporter.summaries) <= 20  # a few flushes for 355 task runs
    final = reporter.summaries[-1]
    assert final.total == 300 + MAX_LISTED_RUNS + 5
    assert final.counts == {"COMPLETED": 300, "FAILED": MAX_LISTED_RUNS + 5}
    assert final.failed_total == MAX_LISTED_RUNS + 5
    assert len(final.failed) == MAX_LISTED_RUNS
    assert all("bad" in f.state.message for f in final.failed)
    totals = [s.total for s in reporter.summaries]
    assert totals == sorted(totals)  # cumulative


def test_summary_is_flushed_before_the_final_state(run) -> None:
    order: list[str] = []

    class Recording(InMemoryReporter):
        async def propose_state(self, state):
            order.append(state.name)
            return await super().propose_state(state)

        async def flush_task_runs(self, summary):
            order.append(f"summary:{summary.total}")
            await super().flush_task_runs(summary)

    @flow
    def two() -> None:
        ok(1), ok(2)

    run(two, reporter=Recording())
    assert order == ["Running", "summary:2", "Completed"]


def test_journal_reporter_writes_json_lines(tmp_path: Path, run) -> None:
    path = tmp_path / "journal.jsonl"

    @flow
    def two() -> int:
        return ok(1) + ok(2)

    assert run(two, reporter=JsonJournalReporter(path)).result() == 3
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["state"]["name"] for e in events if e["event"] == "state"] == [
        "Pending", "Running", "Completed"]
    summaries = [e["summary"] for e in events if e["event"] == "task_runs"]
    assert summaries[-1]["counts"] == {"COMPLETED": 2} and summaries[-1]["total"] == 2


def test_journal_controls_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    reporter = JsonJournalReporter(path)
    anyio.run(reporter.propose_state, states.Running())
    anyio.run(reporter.propose_state, states.Paused())
    append_journal_control(path, "resume")
    assert anyio.run(reporter.read_state).is_running()
    assert not reporter.is_cancellation_requested()
    append_journal_control(path, "cancel")
    assert reporter.is_cancellation_requested()
    assert reporter.state.is_cancelling()
    with pytest.raises(ValueError, match="resume"):
        append_journal_control(path, "explode")


def test_backend_refusing_to_start_a_cancelling_run(run) -> None:
    ran = []
    cancelled = []

    @flow(on_cancellation=[lambda f, r, s: cancelled.append(s.name)])
    def never() -> None:
        ran.append(1)

    reporter = InMemoryReporter(initial=states.Cancelling("user asked"))
    state = run(never, reporter=reporter)
    assert state.is_cancelled() and not ran and cancelled == ["Cancelled"]


def test_backend_refusing_to_start_a_finished_run(run) -> None:
    ran = []

    @flow
    def never() -> None:
        ran.append(1)

    state = run(never, reporter=InMemoryReporter(initial=states.Completed("earlier")))
    assert state.is_completed() and state.message == "earlier" and not ran


def test_cancellation_requested_while_running_ends_cancelled(run) -> None:
    reporter = InMemoryReporter()
    hooks = []

    @flow(on_cancellation=[lambda f, r, s: hooks.append("cancel")],
          on_completion=[lambda f, r, s: hooks.append("complete")])
    def cancelled_midway() -> int:
        reporter.request_cancellation()
        return 1

    state = run(cancelled_midway, reporter=reporter)
    assert state.is_cancelled() and hooks == ["cancel"]
    assert [s.name for s in reporter.history] == ["Pending", "Running", "Cancelling", "Cancelled"]
