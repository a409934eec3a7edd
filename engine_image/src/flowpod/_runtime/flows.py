"""`@flow` and the Flow object: options, hooks, run names, and calling a flow.

Role: the user-facing side of flows. Options are checked at decoration time and
errors name the option. Calling a flow hands it to flowpod._runtime.flow_calls, which
runs it through the flow engine (both imported on first call, so `import flowpod` stays
light): a sync flow returns its result (or raises), an async flow returns a coroutine;
`return_state=True` gives the final State instead. `to_deployment` / `deploy` /
`adeploy` hand the flow to flowpod.deploying (imported on use). Callers: user code via
`flowpod.flow`; flowpod.engine (run_flow_run, entrypoint loading).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Iterable

from flowpod._runtime.parameters import ParameterSpec
from flowpod.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = ["Flow", "flow"]

_HOOKS = ("on_running", "on_completion", "on_failure", "on_crashed", "on_cancellation")


def _check(ok: bool, option: str, value: Any, fix: str) -> None:
    if not ok:
        raise ValueError(f"@flow option {option}={value!r} is invalid: {fix}")


def _is_seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _check_options(opts: dict[str, Any]) -> None:
    _check(isinstance(opts["retries"], int) and opts["retries"] >= 0, "retries", opts["retries"],
           "use an int >= 0")
    _check(_is_seconds(opts["retry_delay_seconds"]), "retry_delay_seconds",
           opts["retry_delay_seconds"], "use a number of seconds >= 0")
    timeout = opts["timeout_seconds"]
    _check(timeout is None or (_is_seconds(timeout) and timeout > 0), "timeout_seconds", timeout,
           "use a number of seconds > 0, or None")
    name = opts["flow_run_name"]
    _check(name is None or isinstance(name, str) or callable(name), "flow_run_name", name,
           "use a format string like 'etl-{day}' or a callable")
    workers = opts["task_workers"]
    _check(isinstance(workers, int) and workers >= 1, "task_workers", workers, "use an int >= 1")
    runner = opts["task_runner"]
    _check(runner is None or isinstance(runner, TaskRunner), "task_runner", runner,
           "use a task runner instance, e.g. ThreadPoolTaskRunner(max_workers=8) from "
           "flowpod.task_runners (an instance, not the class)")
    _check(workers == 16 or not isinstance(runner, ThreadPoolTaskRunner)
           or runner.max_workers is None, "task_workers", workers,
           "the task_runner's max_workers sets the same limit; pass only one of the two")
    limits = opts["tag_limits"]
    _check(limits is None or isinstance(limits, Mapping), "tag_limits", limits,
           "use a mapping like {'db': 2}")
    for hook_option in _HOOKS:
        hooks = opts[hook_option]
        _check(all(callable(h) for h in hooks), hook_option, hooks, "use a list of callables")


def _runner_and_workers(runner: TaskRunner | None, workers: int) -> tuple[TaskRunner, int]:
    """The flow's task runner, and the threads its submitted sync task runs may use."""
    if runner is None:
        return ThreadPoolTaskRunner(), workers
    if isinstance(runner, ThreadPoolTaskRunner) and runner.max_workers is not None:
        return runner, runner.max_workers
    return runner, workers


class Flow:
    """A function whose calls are flow runs: validated, retried, timed, reported."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None, version: str | None = None,
                 flow_run_name: Any = None, retries: int = 0, retry_delay_seconds: float = 0,
                 timeout_seconds: float | None = None, validate_parameters: bool = True,
                 log_prints: bool = False, persist_result: bool = False, task_workers: int = 16,
                 task_runner: TaskRunner | None = None,
                 tag_limits: Mapping[str, int] | None = None,
                 on_running: Iterable[Callable] = (), on_completion: Iterable[Callable] = (),
                 on_failure: Iterable[Callable] = (), on_crashed: Iterable[Callable] = (),
                 on_cancellation: Iterable[Callable] = ()) -> None:
        if not callable(fn):
            raise TypeError(f"@flow must decorate a function, got {fn!r}")
        options = dict(locals())
        del options["self"], options["fn"]
        for hook_option in _HOOKS:
            options[hook_option] = list(options[hook_option])
        _check_options(options)
        self._options = options
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries, self.retry_delay_seconds = retries, retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.should_validate_parameters = validate_parameters
        self.log_prints, self.persist_result = log_prints, persist_result
        self.task_runner, self.task_workers = _runner_and_workers(task_runner, task_workers)
        self.tag_limits = dict(tag_limits or {})
        self.hooks: dict[str, list[Callable]] = {h: options[h] for h in _HOOKS}
        self.is_async = inspect.iscoroutinefunction(fn)
        self.parameters = ParameterSpec(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    def with_options(self, **changes: Any) -> "Flow":
        """A copy of this flow with some options changed."""
        return Flow(self.fn, **{**self._options, **changes})

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """Checked parameters with defaults; raises ParameterValidationError naming fields."""
        return self.parameters.validate(parameters, self.should_validate_parameters)

    def render_run_name(self, parameters: Mapping[str, Any], run_id: str,
                        default: str | None = None) -> str:
        """The run's name: its flow_run_name template rendered, else `default` (in a pod,
        the FlowRun's name), else `<flow name>-<first 8 of the run id>`."""
        template = self.flow_run_name
        if template is None:
            return default or f"{self.name}-{run_id[:8]}"
        if callable(template):
            return str(template())
        try:
            return template.format(**parameters)
        except (KeyError, IndexError) as exc:
            raise ValueError(f"flow_run_name {template!r} of flow {self.name!r} uses {exc}, "
                             "which is not a parameter of the flow") from None

    def to_deployment(self, name: str, *, image: str, **options: Any) -> dict[str, Any]:
        """The Deployment manifest that `flowpod deploy --dry-run` prints for this flow;
        options as flowpod.deploying.to_deployment (entrypoint defaults to this file)."""
        from flowpod import deploying

        return deploying.to_deployment(self, name, image=image, **options)

    async def adeploy(self, name: str, *, image: str, **options: Any) -> str:
        """Apply the Deployment through the kubeconfig's cluster (needs the `cli` extra);
        returns "created", "configured" or "unchanged"."""
        from flowpod import deploying

        return await deploying.adeploy(self, name, image=image, **options)

    def deploy(self, name: str, *, image: str, **options: Any) -> str:
        """adeploy for sync code."""
        from flowpod import deploying

        return deploying.deploy(self, name, image=image, **options)

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        from flowpod._runtime import flow_calls

        parameters = self.parameters.bind_call(args, kwargs)
        return flow_calls.call_flow(self, parameters, return_state)


def flow(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function as a flow: `@flow` or `@flow(retries=1, ...)`."""
    if __fn is None:
        return lambda fn: Flow(fn, **options)
    return Flow(__fn, **options)
