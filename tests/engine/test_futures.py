"""Futures in sync and async flows: `.result()` and `.wait()` block the flow body only,
`wait()` gives the final state, and a flow that returns states ends with their outcome."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from flowpod import flow, states, task


@task
def double(x: int) -> int:
    return 2 * x


@task
async def double_later(x: int) -> int:
    await anyio.sleep(0.01)
    return 2 * x


@task
def fail(message: str = "bad") -> None:
    raise ValueError(message)


def test_result_and_wait_work_in_an_async_flow() -> None:
    @flow
    async def f() -> dict:
        sync_future, async_future = double.submit(1), double_later.submit(2)
        waited = double_later.submit(3).wait()
        return {"sync": sync_future.result(), "async": async_future.result(),
                "waited": (waited.type, waited.data),
                "mapped": double.map(range(4)).result(),
                "mapped_async": double_later.map(range(3)).result(),
                "awaited": await double_later.submit(5)}

    assert anyio.run(f) == {"sync": 2, "async": 4, "waited": (states.StateType.COMPLETED, 6),
                            "mapped": [0, 2, 4, 6], "mapped_async": [0, 2, 4], "awaited": 10}


def test_an_async_subflow_may_block_on_its_futures_too() -> None:
    @flow
    async def child(x: int) -> int:
        return double_later.submit(x).result() + double.submit(x).result()

    @flow
    async def parent() -> list:
        return [await child(1), await child(2)]

    assert anyio.run(parent) == [4, 8]


def test_wait_returns_the_final_state_or_none_after_a_timeout() -> None:
    @task
    def slow() -> str:
        time.sleep(0.3)
        return "done"

    @flow
    def f() -> tuple:
        future = slow.submit()
        early = future.wait(timeout=0.01)
        final = future.wait()
        return early, final, future.wait()

    early, final, again = f()
    assert early is None
    assert isinstance(final, states.State) and final.is_completed() and final.data == "done"
    assert again is final


def test_a_flow_returning_a_waited_state_ends_with_its_outcome() -> None:
    @flow
    async def returns_failed() -> states.State:
        return fail.submit("told to").wait()

    state = anyio.run(lambda: returns_failed(return_state=True))
    assert state.is_failed() and "told to" in state.message

    @flow
    def returns_states() -> list:
        return [double.submit(1).wait(), fail.submit("one of two").wait()]

    state = returns_states(return_state=True)
    assert state.is_failed() and "1 of 2" in state.message and "one of two" in state.message

    @flow
    def returns_completed() -> list:
        return [double.submit(i).wait() for i in range(3)]

    assert returns_completed() == [0, 2, 4]

    @task
    def after(value: object) -> object:
        return value

    @flow
    def returns_not_ready() -> states.State:
        return after.submit(fail.submit("upstream")).wait()  # NotReady: never ran

    state = returns_not_ready(return_state=True)
    assert state.is_failed() and "returned a NotReady state, which is not final" in state.message


def test_blocking_on_a_future_inside_an_async_task_run_is_refused() -> None:
    # Submitted async task runs share the run's event loop: blocking it would stop them all.
    pending = []

    @task
    async def blocks() -> int:
        return pending[0].result()

    @flow
    async def f() -> None:
        pending.append(double_later.submit(1))
        await blocks.submit()

    with pytest.raises(RuntimeError, match="use `await future` instead"):
        anyio.run(f)


def test_an_async_flow_blocked_on_a_future_still_times_out() -> None:
    @task
    async def sleeps() -> None:
        await anyio.sleep(30)

    @flow(timeout_seconds=0.3)
    async def f() -> None:
        sleeps.submit().result()

    started = time.monotonic()
    state = anyio.run(lambda: f(return_state=True))
    assert state.name == "TimedOut"
    assert time.monotonic() - started < 5


def test_a_thread_blocked_on_a_future_runs_queued_task_runs_itself() -> None:
    # One worker, held by the first run until the second has run: only the waiting body
    # can run the second one, so without it this takes the first run's 10 s timeout.
    released = threading.Event()

    @task
    def held() -> bool:
        return released.wait(10)

    @task
    def release() -> str:
        released.set()
        return threading.current_thread().name

    @flow(task_workers=1)
    def f() -> tuple:
        first = held.submit()
        time.sleep(0.05)  # the worker has taken the first run
        return release.submit().result(), first.result()

    started = time.monotonic()
    ran_in, first = f()
    assert first is True and ran_in.startswith("flowpod-flow-")
    assert time.monotonic() - started < 5


def test_map_passes_arguments_as_the_signature_wants() -> None:
    @task
    def positional(a: int, /, b: int, *rest: int, scale: int = 1) -> list:
        return [a, b, *rest, scale]

    @task
    def by_name(a: int, b: int = 0, *, c: int = 0) -> int:
        return a + b + c

    @flow
    def f() -> tuple:
        return (positional.map([1, 2], [3, 4], 5, 6, scale=10).result(),
                by_name.map([1, 2], b=[10, 20], c=100).result())

    assert f() == ([[1, 3, 5, 6, 10], [2, 4, 5, 6, 10]], [111, 122])
