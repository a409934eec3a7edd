"""Caching (cache_key_fn, cache_expiration, refresh_cache), persisted results, and
re-runs of the same flow run skipping task runs that already completed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowpod import flow, task, task_input_hash
from flowpod.reporting import InMemoryReporter


def _counting_task(**options):
    calls: list[int] = []

    @task(**options)
    def work(x: int) -> int:
        calls.append(x)
        return x * 10

    return work, calls


def _task_states(reporter: InMemoryReporter) -> dict[str, int]:
    return reporter.summaries[-1].counts


def test_cache_hit_is_completed_named_cached(run, deps) -> None:
    work, calls = _counting_task(cache_key_fn=task_input_hash)

    @flow
    def f(x: int) -> list:
        states = [work(x, return_state=True), work(x, return_state=True)]
        return [(s.name, s.type.value, s.result()) for s in states]

    first = run(f, {"x": 2}, deps=deps).result()
    assert first == [("Completed", "COMPLETED", 20), ("Cached", "COMPLETED", 20)]
    second = run(f, {"x": 2}, deps=deps).result()  # another flow run shares the cache
    assert second == [("Cached", "COMPLETED", 20), ("Cached", "COMPLETED", 20)]
    assert calls == [2]
    run(f, {"x": 3}, deps=deps)
    assert calls == [2, 3]  # other inputs, other key


def test_cache_expiry_uses_the_injected_clock(run, deps, clock) -> None:
    work, calls = _counting_task(cache_key_fn=lambda ctx, params: "fixed",
                                 cache_expiration=timedelta(minutes=5))

    @flow
    def f() -> str:
        return work(1, return_state=True).name

    assert run(f, deps=deps).result() == "Completed"
    clock.advance(299)
    assert run(f, deps=deps).result() == "Cached"
    clock.advance(2)  # now past the 5 minutes
    assert run(f, deps=deps).result() == "Completed"
    assert calls == [1, 1]
    assert run(f, deps=deps).result() == "Cached"  # the recomputed value is cached again


def test_refresh_cache_recomputes_and_overwrites(run, deps) -> None:
    work, calls = _counting_task(cache_key_fn=lambda ctx, params: "k")
    refreshing = work.with_options(refresh_cache=True)

    @flow
    def f() -> list:
        return [work(1, return_state=True).name, refreshing(2, return_state=True).name,
                work(3)]

    assert run(f, deps=deps).result() == ["Completed", "Completed", 20]
    assert calls == [1, 2]


def test_cache_key_fn_returning_none_skips_the_cache(run, deps) -> None:
    work, calls = _counting_task(cache_key_fn=lambda ctx, params: None)

    @flow
    def f() -> None:
        work(1), work(1)

    run(f, deps=deps)
    assert calls == [1, 1]


def test_rerun_of_same_flow_run_skips_completed_tasks(run, deps) -> None:
    work, calls = _counting_task(persist_result=True)
    fail_first = {"armed": True}

    @task
    def flaky() -> None:
        if fail_first.pop("armed", False):
            raise RuntimeError("crash mid-run")

    @flow
    def f() -> list:
        values = [work(1), work(2)]
        flaky()
        values.append(work(3))
        return values

    first = run(f, flow_run_id="run-1", deps=deps)
    assert first.is_failed() and calls == [1, 2]
    reporter = InMemoryReporter()
    second = run(f, reporter=reporter, flow_run_id="run-1", deps=deps)
    assert second.result() == [10, 20, 30]
    assert calls == [1, 2, 3]  # 1 and 2 came from persisted results
    other = run(f, flow_run_id="run-2", deps=deps)
    assert other.is_completed() and calls == [1, 2, 3, 1, 2, 3]  # another run: no reuse


def test_flow_retry_reuses_task_runs_completed_in_earlier_attempts(run, deps) -> None:
    work, calls = _counting_task()
    attempts = []

    @flow(retries=1)
    def f() -> int:
        value = work(5)
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails after the task")
        return value

    assert run(f, deps=deps).result() == 50
    assert calls == [5] and len(attempts) == 2


def test_unpicklable_result_still_completes(run, deps, caplog: pytest.LogCaptureFixture) -> None:
    @task(persist_result=True)
    def make_lock():
        import threading

        return threading.Lock()

    @flow
    def f() -> bool:
        return make_lock() is not None

    assert run(f, deps=deps).result() is True
    assert any("Could not persist" in r.getMessage() for r in caplog.records)
