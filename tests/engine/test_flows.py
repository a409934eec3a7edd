"""Flow behaviour: results, parameters, names, retries, timeouts, log_prints, hooks,
final state derived from task runs, crashes, subflows."""

from __future__ import annotations

import functools
import logging
import time

import anyio
import pytest

from flowpod import Flow, flow, states, task
from flowpod.engine import RunDeps, run_flow_run
from flowpod.reporting import InMemoryReporter


@task
def double(x: int) -> int:
    return 2 * x


@task
def explode() -> None:
    raise ValueError("kaboom")


def test_sync_flow_returns_its_result() -> None:
    @flow
    def add(a: int, b: int = 2) -> int:
        return double(a) + b

    assert add(3) == 8
    state = add(1, b=5, return_state=True)
    assert state.is_completed() and state.result() == 7


def test_async_flow_returns_a_coroutine() -> None:
    @task
    async def adouble(x: int) -> int:
        return 2 * x

    @flow
    async def aflow(x: int) -> int:
        return await adouble(x) + double(x)

    assert anyio.run(aflow, 4) == 16


def test_flow_raises_the_body_exception() -> None:
    @flow
    def broken() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        broken()
    state = broken(return_state=True)
    assert state.is_failed() and "KeyError" in state.message


def test_parameters_are_validated_and_coerced() -> None:
    @flow
    def typed(count: int, label: str = "x") -> tuple:
        return count, label

    assert typed("5") == (5, "x")
    state = typed("many", return_state=True)
    assert state.is_failed()
    assert "Validation of the flow parameters failed" in state.message
    assert "count" in state.message


def test_parameter_validation_through_the_entry_point() -> None:
    @flow
    def needs(day: int) -> int:
        return day

    missing = anyio.run(run_flow_run, needs, {})
    assert missing.is_failed() and "'day'" in missing.message and "missing" in missing.message
    extra = anyio.run(run_flow_run, needs, {"day": 1, "night": 2})
    assert extra.is_failed() and "'night'" in extra.message
    assert anyio.run(run_flow_run, needs, {"day": "7"}).result() == 7


def test_flow_run_name_template_and_default_name() -> None:
    @flow(flow_run_name="report-{day}")
    def report(day: str) -> str:
        from flowpod._runtime.contexts import flow_run_var

        return flow_run_var.get().name

    assert report("monday") == "report-monday"
    # A name given to the engine (in a pod: the FlowRun's) wins over the template.
    given = anyio.run(functools.partial(run_flow_run, report, {"day": "monday"},
                                        flow_run_name="fr-abc"))
    assert given.result() == "fr-abc"
    assert Flow(lambda: None, name=None).name == "<lambda>"

    @flow
    def my_etl_job() -> None: ...

    assert my_etl_job.name == "my-etl-job"


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="retries"):
        flow(retries=-1)(lambda: None)
    with pytest.raises(ValueError, match="timeout_seconds"):
        flow(timeout_seconds=0)(lambda: None)
    with pytest.raises(ValueError, match="on_completion"):
        flow(on_completion=["not callable"])(lambda: None)


def test_flow_retries_then_succeeds(deps: RunDeps, run, sleeps) -> None:
    attempts = []

    @flow(retries=2, retry_delay_seconds=3)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "ok"

    reporter = InMemoryReporter()
    state = run(flaky, {}, reporter, deps=deps)
    assert state.result() == "ok" and len(attempts) == 3
    assert sleeps.calls == [3, 3]
    retry = reporter.history[2]
    assert (retry.scheduled_time - deps.clock()).total_seconds() == 3
    names = [s.name for s in reporter.history]
    assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry",
                     "Retrying", "Completed"]


def test_flow_retries_exhausted() -> None:
    attempts = []

    @flow(retries=1)
    def always_fails() -> None:
        attempts.append(1)
        raise RuntimeError("nope")

    state = always_fails(return_state=True)
    assert state.is_failed() and len(attempts) == 2


def test_sync_flow_timeout_is_timed_out() -> None:
    reached_end = []

    @flow(timeout_seconds=0.2)
    def slow() -> None:
        for _ in range(150):
            time.sleep(0.02)
        reached_end.append(True)

    started = time.monotonic()
    state = slow(return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    assert "timeout of 0.2 seconds" in state.message
    assert time.monotonic() - started < 2.0  # not the 3 s the body would take
    time.sleep(0.1)
    assert not reached_end  # the abandoned body was interrupted, not left running


def test_async_flow_timeout_is_timed_out() -> None:
    @flow(timeout_seconds=0.1)
    async def slow() -> None:
        await anyio.sleep(5)

    async def main() -> states.State:
        return await slow(return_state=True)

    state = anyio.run(main)
    assert state.name == "TimedOut" and state.type is states.StateType.FAILED


def test_log_prints_sends_print_to_the_run_logger(caplog: pytest.LogCaptureFixture,
                                                  capsys: pytest.CaptureFixture) -> None:
    @task
    def shout() -> None:
        print("from the task")

    @flow(log_prints=True)
    def chatty() -> None:
        print("from the flow")
        shout()

    @flow
    def quiet() -> None:
        print("plain print")

    with caplog.at_level(logging.INFO, logger="flowpod"):
        chatty()
        quiet()
    messages = [r.getMessage() for r in caplog.records]
    assert "from the flow" in messages and "from the task" in messages
    assert "plain print" not in messages
    assert "plain print" in capsys.readouterr().out


def test_none_return_fails_when_a_task_failure_was_not_handled() -> None:
    @flow
    def fire_and_forget() -> None:
        explode.submit()

    state = fire_and_forget(return_state=True)
    assert state.is_failed() and "explode" in state.message and "kaboom" in state.message


def test_none_return_completes_when_failures_were_handled() -> None:
    @flow
    def careful() -> None:
        explode(return_state=True)
        try:
            explode()
        except ValueError:
            pass
        explode.submit().wait()  # waiting is not handling...
        assert explode.submit().state is not None  # ...but looking at the final state is

    state = careful(return_state=True)
    # The third run (only waited for) is unhandled; so the flow fails.
    assert state.is_failed()

    @flow
    def all_handled() -> None:
        explode(return_state=True)
        future = explode.submit()
        future.wait()
        assert future.state.is_failed()

    assert all_handled(return_state=True).is_completed()


def test_returning_futures_gives_their_results_or_failure() -> None:
    @flow
    def returns_futures() -> list:
        return [double.submit(1), double.submit(2)]

    assert returns_futures() == [2, 4]

    @flow
    def returns_failed_future():
        return explode.submit()

    state = returns_failed_future(return_state=True)
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), ValueError)


def test_crash_from_base_exception() -> None:
    seen = []

    @flow(on_crashed=[lambda f, run, state: seen.append(state.name)])
    def interrupted() -> None:
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen == ["Crashed"]


def test_hooks_run_for_each_final_state() -> None:
    calls: list[tuple[str, str]] = []

    def record(kind: str):
        return lambda flow_obj, run, state: calls.append((kind, state.name))

    hooks = dict(on_running=[record("running")], on_completion=[record("completion")],
                 on_failure=[record("failure")])

    @flow(**hooks)
    def good() -> int:
        return 1

    @flow(**hooks)
    def bad() -> None:
        raise ValueError("x")

    good()
    bad(return_state=True)
    assert calls == [("running", "Running"), ("completion", "Completed"),
                     ("running", "Running"), ("failure", "Failed")]


def test_a_raising_hook_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    after = []

    def broken_hook(flow_obj, run, state) -> None:
        raise RuntimeError("hook bug")

    async def async_hook(flow_obj, run, state) -> None:
        after.append(state.name)

    @flow(on_completion=[broken_hook, async_hook], on_running=[broken_hook])
    def fine() -> str:
        return "result"

    with caplog.at_level(logging.ERROR, logger="flowpod"):
        state = fine(return_state=True)
    assert state.is_completed() and state.result() == "result"
    assert after == ["Completed"]  # later hooks still run
    errors = [r for r in caplog.records if "hook bug" in (r.exc_text or "")
              or (r.exc_info and "hook bug" in str(r.exc_info[1]))]
    assert len(errors) == 2


def test_subflows_are_recorded_in_the_parent_run() -> None:
    reporter = InMemoryReporter()

    @flow
    def child(x: int) -> int:
        return double(x)

    @flow
    async def async_child() -> str:
        return "a"

    @flow
    def failing_child() -> None:
        raise ValueError("child broke")

    @flow
    def parent() -> int:
        total = child(1) + child(2)
        failing_child(return_state=True)
        return total

    state = anyio.run(run_flow_run, parent, {}, reporter)
    assert state.result() == 6
    summary = reporter.summaries[-1]
    assert [(s.name.split("-")[0], s.state.name) for s in summary.subflows] == [
        ("child", "Completed"), ("child", "Completed"), ("failing", "Failed")]
    assert reporter.history[-1].is_completed()  # children never wrote the parent's state

    @flow
    async def async_parent() -> str:
        return await async_child() + str(child(3))

    assert anyio.run(async_parent) == "a6"


def test_cancelled_from_outside_is_reported_crashed() -> None:
    reporter = InMemoryReporter()
    crashed = []

    @flow(on_crashed=[lambda f, r, s: crashed.append(s.name)])
    def slow() -> None:
        for _ in range(200):
            time.sleep(0.01)

    async def main() -> None:
        with anyio.move_on_after(0.2):
            await run_flow_run(slow, {}, reporter)

    anyio.run(main)
    assert reporter.history[-1].is_crashed() and crashed == ["Crashed"]
