"""Hermetic tests of on_crashed / on_cancellation hooks in a pod: the engine records the
hooks the flow declares, claims them before running them itself (never when the operator
already ended the run), and the hooks mode of a hook Job runs them once for a killed run
and records the outcome in the frozen final status. A real flow, the real engine and
reporter, and the fake API server (tests/engine/kube_fakes.py), which refuses what the
CRD's rules refuse."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

import flowpod
from fakeapi import status_of
from flowpod import engine, reporting
from flowpod.engine import _hooks_mode, _in_pod, _kubeapi, _kubereporter

from engine.kube_fakes import NAME, NS, FakeApi, Sleeps

FLOW_FILE = '''
import sys
from pathlib import Path
from flowpod import flow

OUT = Path(__file__).with_name("hooks.log")

def append(flow, flow_run, state):
    with open(OUT, "a") as out:
        out.write(f"{flow_run.name} {state.name} {flow_run.parameters}\\n")

def breaks(flow, flow_run, state):
    raise RuntimeError("broke on purpose")

@flow(on_crashed=[append])
def crashes(n: int = 1) -> None:
    raise SystemExit(3)  # not an Exception: the run ends Crashed

@flow(on_crashed=[breaks, append], on_cancellation=[append])
def has_a_broken_hook() -> None:
    pass
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "hook_flows.py"
    path.write_text(FLOW_FILE)
    return path


def _log(flows: Path) -> list[str]:
    out = flows.with_name("hooks.log")
    return out.read_text().splitlines() if out.exists() else []


def _reporter(api: FakeApi) -> _kubereporter.KubeReporter:
    client = _kubeapi.FlowRunClient(_kubeapi.Connection.explicit("https://api.test"), NS,
                                     NAME, transport=httpx.MockTransport(api.handler),
                                     asleep=Sleeps())
    return _kubereporter.KubeReporter(client)


def _run_hook_job(api: FakeApi, entrypoint: str, option: str = "on_crashed") -> int:
    reporter = _reporter(api)
    return anyio.run(lambda: _hooks_mode.run_hooks_in_pod(NAME, entrypoint, option, reporter))


def _killed(**hooks) -> FakeApi:
    """A run the operator ended Crashed after its pod was killed, hooks claimed for the Job."""
    record = {"declared": ["on_crashed"], "runner": "Job", "job": f"{NAME}-hooks",
              "outcome": "Pending", **hooks}
    return FakeApi(status=status_of("CRASHED", "Crashed", "OOMKilled: ...", hooks=record),
                   spec={"entrypoint": "f.py:f", "image": "i", "parameters": {"n": 7}})


def test_the_engine_declares_claims_runs_and_records_its_hooks(flows) -> None:
    api = FakeApi(status=status_of("PENDING", "Pending"))
    settings = _in_pod.PodSettings(NAME, NS, f"{flows}:crashes")
    anyio.run(lambda: _in_pod.run_in_pod(settings, _reporter(api), handle_sigterm=False))
    status = api.obj["status"]
    assert status["state"]["type"] == "CRASHED"
    assert status["hooks"] == {"declared": ["on_crashed"], "runner": "Engine",
                               "outcome": "Succeeded", "message": "1 on_crashed hook(s) ran"}
    assert _log(flows) == [f"{NAME} Crashed {{'n': 1}}"]
    running = next(p for p in api.patches() if p["status"].get("state", {}).get("name")
                   == "Running")
    assert running["status"]["hooks"] == {"declared": ["on_crashed"]}  # with Running


@pytest.mark.parametrize("status,claimed", [
    (status_of("RUNNING", "Running"), True),
    (status_of("CANCELLING", "Cancelling"), True),
    (status_of("CRASHED", "Crashed"), False),  # the operator's verdict: its hook Job's
    (status_of("RUNNING", "Running", hooks={"runner": "Job"}), False),
    (status_of("RUNNING", "Running", hooks={"runner": "Engine"}), False),
])
def test_the_engine_claims_hooks_only_when_nobody_else_can_run_them(status, claimed) -> None:
    api = FakeApi(status=status)
    assert anyio.run(_reporter(api).claim_hooks, "on_crashed") is claimed
    if claimed:
        assert api.obj["status"]["hooks"]["runner"] == "Engine"


def test_a_hook_job_runs_a_killed_runs_hooks_once(flows) -> None:
    api = _killed()
    assert _run_hook_job(api, f"{flows}:crashes") == 0
    hooks = api.obj["status"]["hooks"]
    assert hooks["outcome"] == "Succeeded" and hooks["runner"] == "Job"
    assert api.obj["status"]["state"]["name"] == "Crashed"  # the final state never changes
    assert _log(flows) == [f"{NAME} Crashed {{'n': 7}}"]  # the run's parameters
    assert _run_hook_job(api, f"{flows}:crashes") == 0  # a second pod of it, say
    assert _log(flows) == [f"{NAME} Crashed {{'n': 7}}"]


@pytest.mark.parametrize("hooks", [{"runner": "Engine"}, {"outcome": "Succeeded"},
                                   {"outcome": "Running"},
                                   {"declared": ["on_crashed"], "runner": None}])
def test_a_hook_job_leaves_hooks_that_are_not_its_own(flows, hooks) -> None:
    api = _killed(**hooks)
    assert _run_hook_job(api, f"{flows}:crashes") == 0
    assert _log(flows) == []


def test_a_hook_job_runs_only_the_hooks_of_the_final_state(flows) -> None:
    api = _killed()
    assert _run_hook_job(api, f"{flows}:has_a_broken_hook", "on_cancellation") == 0
    assert _log(flows) == [] and api.obj["status"]["hooks"]["outcome"] == "Pending"


def test_a_raising_hook_is_recorded_failed_and_the_next_hook_still_runs(flows) -> None:
    api = _killed()
    assert _run_hook_job(api, f"{flows}:has_a_broken_hook") == 0
    assert api.obj["status"]["hooks"]["outcome"] == "Failed"
    assert api.obj["status"]["hooks"]["message"] == (
        "on_crashed hook breaks raised RuntimeError: broke on purpose")
    # Parameters the flow does not take (the run failed validation) reach hooks as given.
    assert _log(flows) == [f"{NAME} Crashed {{'n': 7}}"]


def test_an_unloadable_flow_is_recorded_failed(flows) -> None:
    api = _killed()
    assert _run_hook_job(api, f"{flows}:nowhere") == 0
    hooks = api.obj["status"]["hooks"]
    assert hooks["outcome"] == "Failed"
    assert hooks["message"].startswith(f"Flow could not be retrieved from entrypoint "
                                       f"'{flows}:nowhere': ")


class _ClaimingReporter(reporting.InMemoryReporter):
    """An in-memory backend that, like the Kubernetes one, is asked to claim kill hooks."""

    def __init__(self, answer: bool | Exception) -> None:
        super().__init__()
        self.answer = answer
        self.records: list[dict] = []

    async def claim_hooks(self, option: str) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def record_hooks(self, record: dict) -> None:
        self.records.append(record)


@pytest.mark.parametrize("answer,runs", [(True, True), (False, False),
                                         (OSError("API unreachable"), False)])
def test_the_engine_runs_kill_hooks_only_with_the_claim(answer, runs) -> None:
    ran: list[str] = []

    @flowpod.flow(on_crashed=[lambda flow, flow_run, state: ran.append(state.name)])
    def crashes() -> None:
        raise SystemExit(3)

    reporter = _ClaimingReporter(answer)
    state = anyio.run(lambda: engine.run_flow_run(crashes, {}, reporter, handle_sigterm=False))
    assert state.type.value == "CRASHED"  # whatever the claim says, the run ends the same
    assert ran == (["Crashed"] if runs else [])
    assert reporter.records == ([{"outcome": "Succeeded",
                                  "message": "1 on_crashed hook(s) ran"}] if runs else [])
