"""The public surface of `flowpod` (and of flowpod.engine / flowpod.reporting) is exactly
what other code relies on; a rename or a dropped export must fail here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest

import flowpod
from flowpod import engine, reporting, states

EXPECTED = {
    "flow", "task", "Flow", "Task", "TaskRunFuture", "FutureList", "get_run_logger",
    "pause_flow_run", "suspend_flow_run", "unmapped", "allow_failure", "exponential_backoff",
    "task_input_hash", "run_deployment", "arun_deployment",
    "State", "StateType", "Scheduled", "Late", "AwaitingRetry", "AwaitingConcurrencySlot",
    "Pending", "NotReady", "Running", "Retrying", "Completed", "Cached", "Failed", "TimedOut",
    "Crashed", "Cancelling", "Cancelled", "Paused", "Suspended",
    "UpstreamTaskError", "MappingLengthMismatch", "MappingMissingIterable",
    "ParameterValidationError", "PausedRunTimeout", "Abort", "Pause",
}


def test_exported_names_are_exactly_the_documented_ones() -> None:
    assert set(flowpod.__all__) == EXPECTED
    assert len(flowpod.__all__) == len(EXPECTED)  # no duplicates
    for name in flowpod.__all__:
        assert getattr(flowpod, name) is not None, name


def test_version_is_the_installed_one() -> None:
    assert flowpod.__version__ == version("flowpod")
    assert "__version__" not in flowpod.__all__  # a dunder, not an export
    with pytest.raises(AttributeError, match="no_such_name"):
        flowpod.no_such_name  # noqa: B018


def test_the_docstring_example_runs() -> None:
    doc = flowpod.__doc__
    assert doc and "Example::" in doc
    block = doc.split("Example::", 1)[1].split("\n\nMain names:", 1)[0]
    exec(compile(textwrap.dedent(block), "flowpod.__doc__", "exec"), {})  # asserts inside


def test_state_factories_are_the_states_module_ones() -> None:
    for name in ("Completed", "Failed", "Crashed", "Cancelled", "NotReady", "Cached"):
        assert getattr(flowpod, name) is getattr(states, name)


def test_engine_and_reporting_surfaces() -> None:
    assert set(engine.__all__) == {"run_flow_run", "run_hooks_after_kill",
                                   "load_flow_from_entrypoint", "parameter_model", "RunDeps"}
    assert {"Reporter", "InMemoryReporter", "JsonJournalReporter", "TaskRunSummary",
            "CancellationCheck"} <= set(reporting.__all__)


def test_private_modules_declare_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(flowpod.__path__, "flowpod."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), info.name
        assert module.__doc__, info.name


def test_import_flowpod_does_not_load_heavy_dependencies() -> None:
    code = ("import sys, flowpod; heavy = [m for m in ('pydantic', 'httpx', 'anyio', 'kopf', "
            "'importlib.metadata') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_task_runners_surface() -> None:
    from flowpod import task_runners

    assert set(task_runners.__all__) == {"TaskRunner", "ThreadPoolTaskRunner",
                                         "SequentialTaskRunner", "DaskTaskRunner"}
    for name in task_runners.__all__:
        assert issubclass(getattr(task_runners, name), task_runners.TaskRunner)
