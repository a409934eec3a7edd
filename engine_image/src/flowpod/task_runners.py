"""Task runners: how a flow run's submitted task runs (`.submit()`, `.map()`) are run.

Role: the objects a user passes as `@flow(task_runner=...)`, with the names and import
paths Prefect users know. Whatever the runner, the flow's engine in the flow-run process
keeps every task run's states, retries, timeouts, caching and result persistence
(flowpod._runtime.task_engine); a runner only decides where and how many task functions
are called at once. Direct calls (`my_task(x)`) always run in the calling thread.

- `ThreadPoolTaskRunner(max_workers=None)`, the default: submitted sync task runs run in
  threads of the flow-run process, at most `max_workers` task runs at once (a thread that
  waits on a future waits). With None, the pool has the flow's `task_workers` threads (16
  unless set) and a thread waiting on a future runs queued task runs meanwhile, so a task
  run waiting on a later one never deadlocks a full pool. Async task runs run concurrently
  on the flow run's event loop.
- `SequentialTaskRunner()`: `.submit()` runs the task run to its end before it returns,
  so task runs never overlap.
- `TaskRunner`: the base of runners that call task functions somewhere else. A subclass
  implements `call` (and, when it holds resources, `start` and `close`); see its docstring.
- `DaskTaskRunner` (the `flowpod[dask]` extra): each attempt of a task run is one Dask
  future on a dask.distributed cluster; the workers only compute.

The engine reads the runner (flowpod._runtime.flows, flowpod._runtime.task_calls); this
module imports nothing of the runtime, and dask only when a DaskTaskRunner starts (nor
asyncio before then: `import flowpod` stays light).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
from typing import Any, Callable, Mapping

from flowpod.contract import ENV_DASK_ADDRESS
from flowpod.errors import TaskRunCrashed

__all__ = ["TaskRunner", "ThreadPoolTaskRunner", "SequentialTaskRunner", "DaskTaskRunner"]


class TaskRunner:
    """A task runner that calls task functions outside the flow run's threads.

    Write your own by subclassing and implementing `call`. Each flow run works on its own
    copy (`duplicate`), started before the flow's first attempt and closed after its final
    state, on the flow run's event loop. Every attempt of a submitted task run is one
    awaited `call`: when the task has a `timeout_seconds`, the engine cancels the await
    when it passes, and `call` must then stop or release the work it started. Raise
    `flowpod.errors.TaskRunCrashed` when the work was lost (not failed by the task's own
    code) and the task run should end Crashed; any other exception fails the attempt.
    """

    def duplicate(self) -> "TaskRunner":
        """A fresh, unstarted copy for one flow run (the flow's runner is a template)."""
        return copy.copy(self)

    async def start(self) -> None:
        """Acquire what `call` needs (connections, clusters)."""

    async def close(self) -> None:
        """Release what `start` acquired; called once, also after a failed start."""

    async def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], *,
                   name: str) -> Any:
        """Run `fn(*args, **kwargs)` once and return its value (for an async `fn`, the
        awaited value); `name` is the task run's name, for the runner's own records."""
        raise NotImplementedError(f"{type(self).__name__} must implement call()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ThreadPoolTaskRunner(TaskRunner):
    """Submitted sync task runs in threads of the flow-run process: at most `max_workers`
    at once; None: the flow's `task_workers` threads, helped by waiting threads."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
                isinstance(max_workers, bool) or not isinstance(max_workers, int)
                or max_workers < 1):
            raise ValueError(f"ThreadPoolTaskRunner(max_workers={max_workers!r}) is invalid: "
                             "use an int >= 1, or None for the flow's task_workers")
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers!r})"


class SequentialTaskRunner(TaskRunner):
    """Every submitted task run runs to its end before `.submit()` returns, in the calling
    thread (an async task run: on the flow run's event loop, while the caller waits), so
    no two task runs of the flow run ever overlap."""


class DaskTaskRunner(TaskRunner):
    """Each attempt of a submitted task run is one future on a dask.distributed cluster.

    address: the scheduler's address (`tcp://dask-scheduler:8786`); None: the
        `FLOWPOD_DASK_ADDRESS` environment variable, and when that is unset too, a
        `distributed.LocalCluster(**cluster_kwargs)` started in the flow-run process for
        the flow run (closed at its end).
    cluster_kwargs: keyword arguments of that LocalCluster (`n_workers`, ...).
    client_kwargs: keyword arguments of the `distributed.Client`.

    The workers only compute: the task's function and its (resolved) arguments go to
    Dask, the value or exception comes back, and the engine in the flow-run process keeps
    states, retries, timeouts, caching and results. A worker lost mid-task is retried by
    Dask (the scheduler's `allowed-failures`); when Dask gives up, the task run ends
    Crashed. The workers need flowpod and the flow's own dependencies installed.
    """

    def __init__(self, address: str | None = None, *,
                 cluster_kwargs: Mapping[str, Any] | None = None,
                 client_kwargs: Mapping[str, Any] | None = None) -> None:
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._cluster: Any = None
        self._results: _Gatherer | None = None
        self._by_value: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"DaskTaskRunner(address={self.address!r})"

    def duplicate(self) -> "DaskTaskRunner":
        return DaskTaskRunner(self.address, cluster_kwargs=self.cluster_kwargs,
                              client_kwargs=self.client_kwargs)

    @property
    def client(self) -> Any:
        """The started runner's `distributed.Client` (asynchronous, on the flow's loop)."""
        return self._client

    async def start(self) -> None:
        distributed = _import_distributed()
        address = self.address or os.environ.get(ENV_DASK_ADDRESS) or None
        if address is None:
            self._cluster = await distributed.LocalCluster(asynchronous=True,
                                                           **self.cluster_kwargs)
            address = self._cluster
        self._client = await distributed.Client(address, asynchronous=True,
                                                **self.client_kwargs)
        self._results = _Gatherer(self._client)

    async def close(self) -> None:
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()

    async def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], *,
                   name: str) -> Any:
        if self._client is None:
            raise RuntimeError(f"{self!r} was not started; the flow run starts its runner")
        import asyncio
        import uuid

        from distributed import wait as distributed_wait

        self._ship_module_by_value(fn)
        target = _run_coroutine if inspect.iscoroutinefunction(fn) else _call
        try:  # a unique key: every attempt is its own future, never a cached one
            future = self._client.submit(target, fn, args, kwargs, pure=False,
                                         key=f"{name}-{uuid.uuid4().hex}")
        except Exception as exc:
            raise _unpicklable(name, fn, args, kwargs, exc) from exc
        try:
            await distributed_wait(future)
            if future.status == "finished" and self._results is not None:
                with contextlib.suppress(_Refetch):
                    return await self._results.value_of(future)
            return await future  # the value, the task's exception, or why Dask lost it
        except asyncio.CancelledError:  # the task's timeout, or the flow run stopping
            future.release()  # the scheduler forgets it: a queued call never starts
            raise
        except _lost_errors() as exc:
            raise TaskRunCrashed(_lost_message(exc)) from exc

    def _ship_module_by_value(self, fn: Callable[..., Any]) -> None:
        """Functions of a module the workers cannot import by its name (a flow file the
        engine loaded by path, a script's __main__) travel by value, with that module."""
        module_name = getattr(fn, "__module__", None) or "__main__"
        known = self._by_value.get(module_name)
        if known is None:
            import importlib.machinery

            top = module_name.partition(".")[0]
            importable = (top in sys.builtin_module_names or top in sys.stdlib_module_names
                          or importlib.machinery.PathFinder.find_spec(top) is not None)
            module = sys.modules.get(module_name)
            known = self._by_value[module_name] = not importable and module is not None
            if known:
                import cloudpickle

                cloudpickle.register_pickle_by_value(module)


class _Gatherer:
    """Fetches the values of finished futures in batches: one `gather` for all futures
    that finished by the time it runs, instead of a round trip to a worker for each
    (awaiting a Dask future alone gathers just that one)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._waiting: list[tuple[Any, Any]] = []  # (Dask future, asyncio future)

    def value_of(self, future: Any) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiting.append((future, waiter))
        if len(self._waiting) == 1:  # the first of a batch schedules the batch's gather
            loop.create_task(self._gather())
        return waiter

    async def _gather(self) -> None:
        import asyncio

        await asyncio.sleep(0)  # futures finishing in this loop turn join the batch
        batch, self._waiting = self._waiting, []
        try:
            values = await self._client.gather([future for future, _ in batch])
        except Exception:  # a value was lost meanwhile: each asks for its own, and says why
            values = None
        for index, (future, waiter) in enumerate(batch):
            if waiter.done():
                continue
            if values is not None:
                waiter.set_result(values[index])
            else:
                waiter.set_exception(_Refetch(future))


class _Refetch(Exception):
    """Internal: the batched gather failed; the caller awaits its own future instead."""

    def __init__(self, future: Any) -> None:
        super().__init__("refetch")
        self.future = future


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """What a Dask worker runs for a sync task function."""
    return fn(*args, **kwargs)


def _run_coroutine(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """What a Dask worker runs for an async task function: its own event loop, in the
    worker's thread, so the worker's event loop is never blocked by user code."""
    import asyncio

    return asyncio.run(fn(*args, **kwargs))


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "DaskTaskRunner needs dask.distributed, which is not installed here: install "
            "flowpod with the dask extra (pip install 'flowpod[dask]'), or `pip install dask "
            "distributed` in an image built FROM the engine image."
        ) from exc
    return distributed


def _lost_errors() -> tuple[type[BaseException], ...]:
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    return (KilledWorker, FutureCancelledError)


def _lost_message(exc: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return (f"the Dask workers running it died, more often than the scheduler's "
                f"allowed-failures lets it retry (KilledWorker: {exc})")
    return f"Dask cancelled it before it finished ({type(exc).__name__}: {exc})"


def _unpicklable(name: str, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any],
                 exc: Exception) -> Exception:
    """The clearest error for a submit that failed: name what cannot be pickled."""
    import pickle

    import cloudpickle

    parts = [(f"its function {getattr(fn, '__qualname__', fn)!r}", fn)]
    parts += [(f"positional argument {i}", value) for i, value in enumerate(args)]
    parts += [(f"argument {key!r}", value) for key, value in kwargs.items()]
    for label, value in parts:
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            return TypeError(
                f"Task run {name!r} cannot be sent to Dask: {label} ({type(value).__name__}) "
                f"cannot be pickled: {error}. Pass picklable values (Dask workers are other "
                "processes), or create the object inside the task.")
    if isinstance(exc, pickle.PicklingError):
        return TypeError(f"Task run {name!r} cannot be sent to Dask: {exc}")
    return exc
