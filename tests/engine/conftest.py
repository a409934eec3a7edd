"""Fixtures for the engine unit tests: keep every run's results in a temporary dir.

Direct flow calls (`my_flow()`) use the default result directory, which honours
$FLOWPOD_RESULT_DIR; pointing it at tmp_path keeps the suite hermetic.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowpod.engine import RunDeps


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWPOD_RESULT_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


class FakeClock:
    """An injectable clock tests move by hand (aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SleepRecorder:
    """Fake sync and async sleeps that only record what they were asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def deps(tmp_path: Path, clock: FakeClock, sleeps: SleepRecorder) -> RunDeps:
    return RunDeps(clock=clock, sleep=sleeps.sleep, asleep=sleeps.asleep,
                   result_dir=tmp_path / "deps-results", flush_interval=0.05)


@pytest.fixture
def run():
    """run(flow, parameters, reporter=None, cancel=None, **options) -> final State."""
    import functools

    import anyio

    from flowpod.engine import run_flow_run

    def run_sync(flow, parameters=None, reporter=None, cancel=None, **options):
        return anyio.run(functools.partial(run_flow_run, flow, parameters or {}, reporter,
                                           cancel, **options))

    return run_sync
