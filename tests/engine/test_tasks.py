"""Task behaviour: call/submit/map, upstream failures, retries, timeouts, names, tags."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from flowpod import (
    MappingLengthMismatch,
    MappingMissingIterable,
    UpstreamTaskError,
    allow_failure,
    exponential_backoff,
    flow,
    states,
    task,
    unmapped,
)
from flowpod._runtime.task_engine import retry_delay
from flowpod.reporting import InMemoryReporter


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def fail(message: str = "bad") -> None:
    raise ValueError(message)


def test_call_returns_result_and_state() -> None:
    @flow
    def f() -> tuple:
        return add(1, 2), add(3, return_state=True)

    value, state = f()
    assert value == 3 and state.is_completed() and state.result() == 3


def test_task_outside_a_flow_just_runs() -> None:
    assert add(2, 2) == 4
    with pytest.raises(RuntimeError, match="inside a flow run"):
        add.submit(1)


def test_submit_returns_a_future() -> None:
    @flow
    def f() -> int:
        future = add.submit(20, 1)
        return future.result() + add.submit(future, 1).result()

    assert f() == 43


def test_map_with_unmapped_and_futures() -> None:
    @flow
    def f() -> list:
        first = add.map([1, 2, 3], unmapped(10))
        return add.map(first, y=[100, 200, 300]).result()

    assert f() == [111, 212, 313]


def test_map_over_a_static_list_argument_needs_unmapped() -> None:
    @task
    def total(x: int, weights: list) -> int:
        return x * sum(weights)

    @flow
    def f() -> list:
        return total.map([1, 2], unmapped([1, 2, 3])).result()

    assert f() == [6, 12]


def test_map_length_mismatch_names_the_parameters() -> None:
    @flow
    def f() -> None:
        add.map([1, 2, 3], [1, 2])

    with pytest.raises(MappingLengthMismatch, match=r"x=3, y=2"):
        f()


def test_map_without_iterable() -> None:
    @flow
    def f() -> None:
        add.map(1, unmapped([5]))

    with pytest.raises(MappingMissingIterable, match="x=int"):
        f()


def test_map_of_empty_iterable_is_empty() -> None:
    @flow
    def f() -> list:
        return add.map([]).result()

    assert f() == []


def test_upstream_failure_makes_dependants_not_ready() -> None:
    reporter = InMemoryReporter()

    @flow
    def f() -> tuple:
        broken = fail.submit("root cause")
        child = add.submit(broken, 1)
        waiter = add.submit(1, wait_for=[broken])
        child.wait(), waiter.wait()
        return {"child": child.state, "waiter": waiter.state}

    result = anyio.run(_run, f, reporter)
    for state in result.values():
        assert state.type is states.StateType.PENDING and state.name == "NotReady"
        assert "Upstream task run 'fail'" in state.message and "root cause" in state.message
        with pytest.raises(UpstreamTaskError):
            state.result()
    summary = reporter.summaries[-1]
    assert summary.counts == {"FAILED": 1, "PENDING": 2}


def test_direct_call_with_failed_upstream_raises_upstream_error() -> None:
    @flow
    def f() -> None:
        broken = fail(return_state=True)
        add(broken)

    with pytest.raises(UpstreamTaskError, match="did not start"):
        f()


def test_allow_failure_lets_the_dependant_run() -> None:
    @task
    def describe(value: object) -> str:
        return type(value).__name__

    @flow
    def f() -> str:
        return describe(allow_failure(fail.submit()))

    assert f() == "ValueError"


def test_retries_exhausted() -> None:
    attempts = []

    @task(retries=2)
    def flaky() -> None:
        attempts.append(1)
        raise RuntimeError(f"attempt {len(attempts)}")

    @flow
    def f() -> states.State:
        return flaky(return_state=True)

    state = f(return_state=True)  # a returned state becomes the flow's final state
    assert state.is_failed() and len(attempts) == 3 and "attempt 3" in state.message


def test_retries_then_success_record_retry_states(deps, run, sleeps) -> None:
    attempts = []

    @task(retries=3, retry_delay_seconds=[1, 5])
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise RuntimeError("again")
        return "done"

    @flow
    def f() -> list:
        from flowpod._runtime.contexts import flow_run_var

        assert flaky() == "done"
        return [s.name for s in flow_run_var.get().record.task_runs[0].states]

    names = run(f, deps=deps).result()
    assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry",
                     "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    assert sleeps.calls == [1, 5, 5]  # the last delay repeats


def test_retry_delay_helpers() -> None:
    backoff = task(retries=4, retry_delay_seconds=exponential_backoff(2))(lambda: None)
    assert [retry_delay(backoff, i) for i in range(4)] == [2, 4, 8, 16]
    jittery = task(retries=1, retry_delay_seconds=10, retry_jitter_factor=0.5)(lambda: None)
    assert retry_delay(jittery, 0, rand=lambda: 0.0) == 5
    assert retry_delay(jittery, 0, rand=lambda: 1.0) == 15
    assert retry_delay(jittery, 0, rand=lambda: 0.5) == 10


def test_retry_condition_fn_stops_retries() -> None:
    attempts = []

    def only_on_timeouts(task_obj, task_run, state) -> bool:
        return isinstance(state.result(raise_on_failure=False), TimeoutError)

    @task(retries=5, retry_condition_fn=only_on_timeouts)
    def picky() -> None:
        attempts.append(1)
        raise ValueError("not retriable")

    @flow
    def f() -> states.State:
        return picky(return_state=True)

    assert f(return_state=True).is_failed() and len(attempts) == 1


def test_sync_task_timeout() -> None:
    finished = []

    @task(timeout_seconds=0.1)
    def slow() -> None:
        for _ in range(300):
            time.sleep(0.01)
        finished.append(True)

    @flow
    def f() -> states.State:
        return slow(return_state=True)

    started = time.monotonic()
    state = f(return_state=True)
    assert state.name == "TimedOut" and state.type is states.StateType.FAILED
    assert "timeout of 0.1 seconds" in state.message
    assert time.monotonic() - started < 2.0  # not the 3 s the body would take
    time.sleep(0.1)
    assert not finished  # interrupted, not left running


def test_async_task_timeout() -> None:
    @task(timeout_seconds=0.1)
    async def slow() -> None:
        await anyio.sleep(10)

    @flow
    async def f() -> states.State:
        return await slow(return_state=True)

    async def main() -> states.State:
        return await f(return_state=True)

    state = anyio.run(main)
    assert state.name == "TimedOut"
    with pytest.raises(TimeoutError):
        state.result()


def test_submitted_sync_task_timeout_with_retry() -> None:
    calls = []

    @task(timeout_seconds=0.05, retries=1)
    def slow_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)
        return "second try"

    @flow
    def f() -> str:
        return slow_once.submit().result()

    assert f() == "second try"


def test_task_run_name_and_tags() -> None:
    @task(task_run_name="load-{day}", tags=["io"])
    def load(day: str) -> str:
        from flowpod._runtime.contexts import task_run_var

        ctx = task_run_var.get()
        return f"{ctx.task_run.name}:{','.join(ctx.task_run.tags)}"

    @flow
    def f() -> list:
        return [load("mon"), *load.map(["tue", "wed"]).result()]

    assert f() == ["load-mon:io", "load-tue:io", "load-wed:io"]


def test_bad_task_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="retry_delay_seconds"):
        task(retry_delay_seconds="soon")(lambda: None)
    with pytest.raises(ValueError, match="cache_expiration"):
        task(cache_expiration=60)(lambda: None)
    with pytest.raises(ValueError, match="tags"):
        task(tags="io")(lambda: None)


def test_tag_concurrency_limit() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    @task(tags=["db"])
    def query(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return i

    @task
    def free(i: int) -> int:
        return i

    @flow(tag_limits={"db": 2}, task_workers=8)
    def f() -> list:
        free.map(range(10))
        return query.map(range(12)).result()

    assert f() == list(range(12))
    assert peak[0] == 2


def test_async_tasks_submitted_and_mapped_run_concurrently() -> None:
    started = [0]
    all_started = anyio.Event()

    @task
    async def rendezvous(x: int) -> int:
        # Returns only once all 21 runs have started: they must be running together.
        started[0] += 1
        if started[0] == 21:
            all_started.set()
        with anyio.fail_after(5):
            await all_started.wait()
        return 2 * x

    @flow
    async def f() -> list:
        futures = rendezvous.map(range(20))
        single = rendezvous.submit(50)
        return [await fut for fut in futures] + [await single]

    assert anyio.run(f) == [2 * i for i in range(20)] + [100]


async def _run(flow_obj, reporter):
    from flowpod.engine import run_flow_run

    state = await run_flow_run(flow_obj, {}, reporter)
    return state.result()


def test_a_broken_cache_key_fn_fails_the_task_run() -> None:
    def broken_key(context, parameters) -> str:
        raise LookupError("no key")

    @task(cache_key_fn=broken_key)
    def cached() -> int:
        return 1

    @flow
    def f() -> str:
        return cached(return_state=True).message

    assert "could not run" in f() and "no key" in f()
