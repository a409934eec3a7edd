"""The seeds' task semantics under every task runner, and what only one runner promises.

One suite, parametrised by runner (the thread pool, the sequential runner, and Dask on a
real dask.distributed LocalCluster of worker processes), keeps the three from drifting:
submit, map, wait_for, upstream failures, retries, timeouts, caching and the task-run
summary are the engine's, whichever runner calls the task functions. Task functions keep
their evidence in files, because under Dask they run in other processes. Then: the
sequential runner never overlaps two task runs, the thread pool never exceeds (and
reaches) its max_workers, a runner of one's own needs only `call`, and bad options fail
at decoration time naming the option.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest

from flowpod import allow_failure, flow, states, task
from flowpod._runtime.flow_engine import run_flow
from flowpod.reporting import InMemoryReporter
from flowpod.task_runners import (
    DaskTaskRunner,
    SequentialTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
)

RUNNERS = ["thread_pool", "sequential", "dask"]


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                  dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> TaskRunner:
    if request.param == "thread_pool":
        return ThreadPoolTaskRunner(max_workers=4)
    if request.param == "sequential":
        return SequentialTaskRunner()
    return DaskTaskRunner(request.getfixturevalue("dask_address"))


def _run(flow_obj: Any, reporter: InMemoryReporter | None = None) -> states.State:
    return anyio.run(lambda: run_flow(flow_obj, {}, reporter=reporter, handle_sigterm=False))


# -- tasks: evidence in files, so they work in other processes too ------------------------

@task
def add(x: int, y: int = 0) -> tuple[int, int]:
    return x + y, os.getpid()


@task
def inc(x: int) -> int:
    return x + 1


@task
async def add_async(x: int) -> int:
    await anyio.sleep(0)
    return x + 1


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def note(path: str, text: str) -> str:
    with open(path, "a") as file:
        file.write(text + "\n")
    return text


@task(retries=2)
def flaky(path: str, failures: int) -> int:
    """Fails its first `failures` attempts (counted in the file), then returns the count."""
    with open(path, "a") as file:
        file.write("attempt\n")
    attempts = len(Path(path).read_text().splitlines())
    if attempts <= failures:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@task(timeout_seconds=0.3)
def too_slow() -> None:
    time.sleep(5)


def _by_argument(context: Any, parameters: dict[str, Any]) -> str:
    return f"counted-{parameters['key']}"


@task(cache_key_fn=_by_argument)
def counted(path: str, key: str) -> str:
    with open(path, "a") as file:
        file.write(key + "\n")
    return key.upper()


# -- the shared suite ---------------------------------------------------------------------

def test_submit_and_map_return_values_in_order(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def f() -> dict:
        mapped = add.map(range(50), y=10).result()
        single = add.submit(1, 2).result()
        chained = inc.submit(inc.submit(4)).result()  # an upstream future as argument
        return {"mapped": [value for value, _ in mapped], "single": single[0],
                "chained": chained, "async": add_async.map([1, 2]).result()}

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_completed(), state
    assert state.data == {"mapped": [i + 10 for i in range(50)], "single": 3, "chained": 6,
                          "async": [2, 3]}
    summary = reporter.summaries[-1]
    assert summary.total == 55 and summary.counts == {"COMPLETED": 55}


def test_a_raising_task_fails_with_its_exception(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def f() -> dict:
        future = fail.submit("broken on purpose")
        state = future.wait()
        with pytest.raises(ValueError, match="broken on purpose"):
            future.result()
        return {"type": state.type, "message": state.message}

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_completed(), state  # the failure was looked at, so it was handled
    assert state.data == {"type": states.StateType.FAILED,
                          "message": "Task run raised ValueError: broken on purpose"}
    assert reporter.summaries[-1].counts == {"FAILED": 1}


def test_wait_for_orders_runs_and_stops_after_a_failed_upstream(runner: TaskRunner,
                                                              tmp_path: Path) -> None:
    log = str(tmp_path / "order.txt")

    @flow(task_runner=runner)
    def f() -> dict:
        first = note.submit(log, "first")
        second = note.submit(log, "second", wait_for=[first])
        broken = fail.submit("root cause")
        skipped = note.submit(log, "never", wait_for=[broken])
        tolerant = note.submit(log, "tolerant", wait_for=[allow_failure(broken)])
        return {"second": second.wait().type, "skipped": skipped.wait(),
                "tolerant": tolerant.result()}

    state = _run(f)
    assert state.is_completed(), state
    skipped = state.data["skipped"]
    assert skipped.name == "NotReady" and "root cause" in skipped.message
    assert state.data["tolerant"] == "tolerant"
    lines = Path(log).read_text().splitlines()
    assert lines.index("first") < lines.index("second")
    assert "never" not in lines


def test_retries_rerun_the_task_function(runner: TaskRunner, tmp_path: Path) -> None:
    @flow(task_runner=runner)
    def f() -> dict:
        recovered = flaky.submit(str(tmp_path / "a.txt"), 2)
        exhausted = flaky.submit(str(tmp_path / "b.txt"), 5)
        return {"recovered": recovered.result(), "exhausted": exhausted.wait(),
                "runs": (recovered.task_run.run_count, exhausted.task_run.run_count)}

    state = _run(f)
    assert state.is_completed(), state
    assert state.data["recovered"] == 3
    assert state.data["exhausted"].is_failed()
    assert state.data["exhausted"].message == "Task run raised RuntimeError: attempt 3 fails"
    assert state.data["runs"] == (3, 3)
    assert len((tmp_path / "b.txt").read_text().splitlines()) == 3


def test_a_timeout_ends_the_task_run_timed_out(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def f() -> tuple:
        timed_out = too_slow.submit().wait()
        return timed_out.name, timed_out.message

    state = _run(f)
    assert state.is_completed(), state
    assert state.data == ("TimedOut", "Task run exceeded its timeout of 0.3 seconds")


def test_a_cached_task_is_not_called_again(runner: TaskRunner, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"

    @flow(task_runner=runner)
    def f() -> list:
        first = counted.submit(str(calls), "a").wait()
        again = counted.submit(str(calls), "a").wait()
        other = counted.submit(str(calls), "b").wait()
        return [(s.name, s.data) for s in (first, again, other)]

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_completed(), state
    assert state.data == [("Completed", "A"), ("Cached", "A"), ("Completed", "B")]
    assert calls.read_text().splitlines() == ["a", "b"]
    assert reporter.summaries[-1].counts == {"COMPLETED": 3}  # Cached is a Completed type


def test_an_unhandled_failure_fails_the_flow(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def f() -> None:
        add.map(range(3))
        fail.submit("nobody looked")

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_failed()
    assert "1 task run(s) failed" in state.message and "nobody looked" in state.message
    assert reporter.summaries[-1].counts == {"COMPLETED": 3, "FAILED": 1}


# -- what one runner promises -------------------------------------------------------------

def test_the_sequential_runner_never_overlaps_task_runs() -> None:
    spans: list[tuple[str, float, float]] = []

    @task
    def record(name: str) -> None:
        started = time.perf_counter()
        time.sleep(0.01)
        spans.append((name, started, time.perf_counter()))

    @task
    async def record_async(name: str) -> None:
        started = time.perf_counter()
        await anyio.sleep(0.01)
        spans.append((name, started, time.perf_counter()))

    @flow(task_runner=SequentialTaskRunner())
    def f() -> None:
        record.map([f"m{i}" for i in range(5)])
        record_async.submit("a0")
        record.submit("s0")
        record_async.map(["a1", "a2"])

    assert _run(f).is_completed()
    names = [name for name, _, _ in spans]
    assert names == ["m0", "m1", "m2", "m3", "m4", "a0", "s0", "a1", "a2"]
    for (_, _, ended), (_, started, _) in zip(spans, spans[1:]):
        assert ended <= started


def test_the_thread_pool_reaches_and_never_exceeds_max_workers() -> None:
    lock, running, peak = threading.Lock(), [0], [0]
    together = threading.Barrier(3, timeout=60)  # passes only with 3 runs at once

    @task
    def busy(i: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if i < 3:
                together.wait()
            time.sleep(0.005)
        finally:
            with lock:
                running[0] -= 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def f() -> None:
        busy.map(range(30)).wait()

    assert _run(f).is_completed()
    assert peak[0] == 3


def test_the_default_runner_is_the_thread_pool_of_task_workers() -> None:
    @flow
    def default() -> None: ...

    @flow(task_workers=5)
    def five() -> None: ...

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=7))
    def seven() -> None: ...

    assert repr(default.task_runner) == "ThreadPoolTaskRunner(max_workers=None)"
    assert default.task_workers == 16
    assert (five.task_workers, five.task_runner.max_workers) == (5, None)
    assert seven.task_workers == 7
    assert seven.with_options(retries=1).task_runner is seven.task_runner


class InThreads(TaskRunner):
    """A runner of one's own: every call in a fresh thread, counting starts and closes."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def duplicate(self) -> "InThreads":
        return self  # the test reads the events of the one instance

    async def start(self) -> None:
        self.events.append("start")

    async def close(self) -> None:
        self.events.append("close")

    async def call(self, fn: Any, args: tuple, kwargs: dict, *, name: str) -> Any:
        self.events.append(name)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def test_a_runner_of_ones_own_needs_only_call() -> None:
    runner = InThreads()

    @flow(task_runner=runner, retries=1)
    def f() -> list:
        return [value for value, _ in add.map(range(3)).result()]

    assert _run(f).data == [0, 1, 2]
    assert runner.events[0] == "start" and runner.events[-1] == "close"
    assert runner.events[1:-1] == ["add", "add", "add"]  # the task runs' names


class CannotStart(TaskRunner):
    async def start(self) -> None:
        raise ConnectionError("no scheduler at tcp://nowhere:8786")


def test_a_runner_that_cannot_start_fails_the_flow_run_naming_it() -> None:
    @flow(task_runner=CannotStart())
    def f() -> None: ...

    state = _run(f)
    assert state.is_failed()
    assert state.message == ("The flow's task runner CannotStart() could not start: "
                             "ConnectionError: no scheduler at tcp://nowhere:8786")


@pytest.mark.parametrize(("options", "message"), [
    ({"task_runner": ThreadPoolTaskRunner},
     "task_runner=<class 'flowpod.task_runners.ThreadPoolTaskRunner'> is invalid: use a task "
     "runner instance"),
    ({"task_runner": ThreadPoolTaskRunner(2), "task_workers": 4},
     "task_workers=4 is invalid: the task_runner's max_workers sets the same limit"),
])
def test_bad_runner_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        flow(**options)(lambda: None)


def test_bad_max_workers_names_it() -> None:
    with pytest.raises(ValueError, match=r"ThreadPoolTaskRunner\(max_workers=0\) is invalid"):
        ThreadPoolTaskRunner(max_workers=0)


def test_dask_missing_fails_the_flow_run_saying_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # what an image without it sees

    @flow(task_runner=DaskTaskRunner("tcp://127.0.0.1:1"))
    def f() -> None: ...

    state = _run(f)
    assert state.is_failed()
    assert state.message.startswith(
        "The flow's task runner DaskTaskRunner(address='tcp://127.0.0.1:1') could not start: "
        "ImportError: DaskTaskRunner needs dask.distributed, which is not installed here: "
        "install flowpod with the dask extra (pip install 'flowpod[dask]')")
