"""DaskTaskRunner on a real dask.distributed LocalCluster of worker processes.

The task functions run in the workers (their process ids prove it) while the engine in
this process keeps the states: a map over 1,000 task runs, an async task function, an
argument that cannot be pickled (a clear error naming it), a timeout that releases the
Dask future, the scheduler address from FLOWPOD_DASK_ADDRESS, a LocalCluster of the
runner's own, and workers killed mid-task: retried by Dask, and Crashed with the reason
once Dask gives up. The semantics shared with the other runners are in
test_task_runners.py.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest

from flowpod import flow, states, task
from flowpod._runtime.flow_engine import run_flow
from flowpod.contract import ENV_DASK_ADDRESS
from flowpod.reporting import InMemoryReporter
from flowpod.task_runners import DaskTaskRunner
from flowpod_devcluster.waiting import wait_for

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # One failure allowed: a task whose worker dies twice is given up on (KilledWorker).
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                      dashboard_address=":0") as local:
            yield local


@pytest.fixture
def worker_pids(cluster: Any) -> set[int]:
    with distributed.Client(cluster.scheduler_address) as client:
        return set(client.run(os.getpid).values())


def _run(flow_obj: Any, reporter: InMemoryReporter | None = None) -> states.State:
    return anyio.run(lambda: run_flow(flow_obj, {}, reporter=reporter, handle_sigterm=False))


@task
def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@task
async def square_async(x: int) -> tuple[int, int]:
    await anyio.sleep(0)
    return x * x, os.getpid()


@task
def describe(value: Any) -> str:
    return repr(value)


@task
def die_once(marker: str) -> int:
    """Kills its worker the first time (the marker file says so), then returns its pid."""
    if not os.path.exists(marker):
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@task(retries=3)
def die_always() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task(timeout_seconds=0.5)
def sleep_long(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_a_map_over_1000_task_runs_computes_on_the_workers(cluster: Any,
                                                           worker_pids: set[int]) -> None:
    @flow(task_runner=DaskTaskRunner(cluster.scheduler_address))
    def f() -> list:
        return square.map(range(1000)).result() + square_async.map([3]).result()

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_completed(), state
    values = [value for value, _ in state.data]
    assert values == [x * x for x in range(1000)] + [9]
    pids = {pid for _, pid in state.data}
    assert pids <= worker_pids and os.getpid() not in pids
    assert reporter.summaries[-1].total == 1001
    assert reporter.summaries[-1].counts == {"COMPLETED": 1001}


def test_an_unpicklable_argument_fails_the_task_run_naming_it(cluster: Any) -> None:
    @flow(task_runner=DaskTaskRunner(cluster.scheduler_address))
    def f() -> tuple:
        state = describe.submit(value=threading.Lock()).wait()
        return state.name, state.message

    state = _run(f)
    assert state.is_completed(), state
    name, message = state.data
    assert name == "Failed"
    assert message.startswith("Task run raised TypeError: Task run 'describe' cannot be sent "
                              "to Dask: argument 'value' (lock) cannot be pickled")


def test_a_timeout_releases_the_dask_future(cluster: Any) -> None:
    @flow(task_runner=DaskTaskRunner(cluster.scheduler_address))
    def f() -> tuple:
        state = sleep_long.submit(30).wait()
        return state.name, state.message

    state = _run(f)
    assert state.data == ("TimedOut", "Task run exceeded its timeout of 0.5 seconds")
    # The scheduler forgets the released task: nothing of it is kept or computed again.
    wait_for("the scheduler to release the timed-out task",
             lambda: [str(key) for key in cluster.scheduler.tasks],
             lambda keys: not any(key.startswith("sleep_long") for key in keys), timeout=60)


def test_the_address_can_come_from_the_environment(cluster: Any, worker_pids: set[int],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DASK_ADDRESS, cluster.scheduler_address)

    @flow(task_runner=DaskTaskRunner())
    def f() -> int:
        return square.submit(2).result()[1]

    state = _run(f)
    assert state.data in worker_pids


def test_without_an_address_the_runner_starts_and_closes_a_local_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DASK_ADDRESS, raising=False)
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False,
                                            "dashboard_address": ":0"})
    seen: list[Any] = []

    @task
    def where() -> str:
        return distributed.get_worker().address

    @flow(task_runner=runner)
    def f() -> str:
        from flowpod._runtime.contexts import flow_run_var

        seen.append(flow_run_var.get().services.task_runner)
        return where.submit().result()

    state = _run(f)
    assert state.is_completed(), state
    assert state.data.startswith("inproc://")  # a worker of the runner's own cluster
    assert seen[0] is not runner and seen[0].client is None  # its copy, closed again


def test_a_worker_killed_mid_task_is_retried_by_dask(cluster: Any, tmp_path: Path) -> None:
    @flow(task_runner=DaskTaskRunner(cluster.scheduler_address))
    def f() -> tuple:
        future = die_once.submit(str(tmp_path / "marker"))
        return future.result(), future.task_run.run_count

    state = _run(f)
    assert state.is_completed(), state
    pid, attempts = state.data
    assert attempts == 1  # one attempt of the engine; Dask ran it again elsewhere
    assert (tmp_path / "marker").exists() and pid != os.getpid()


def test_when_dask_gives_up_on_a_killed_worker_the_task_run_crashes(cluster: Any) -> None:
    @flow(task_runner=DaskTaskRunner(cluster.scheduler_address))
    def f() -> tuple:
        future = die_always.submit()
        state = future.wait()
        return state.name, state.message, future.task_run.run_count

    reporter = InMemoryReporter()
    state = _run(f, reporter)
    assert state.is_completed(), state
    name, message, attempts = state.data
    assert name == "Crashed"
    assert message.startswith("Task run crashed: the Dask workers running it died, more often "
                              "than the scheduler's allowed-failures lets it retry "
                              "(KilledWorker: ")
    assert attempts == 1  # the task's own retries do not run it again: Dask retried already
    assert reporter.summaries[-1].counts == {"CRASHED": 1}
