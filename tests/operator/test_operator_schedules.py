"""Deployment schedules on the real plane (the engine really running in pods): runs start at
their due times under deterministic names and complete; an unreadable schedule makes only
its Deployment Ready=False; Forbid never overlaps runs; an operator stopped across a due time
starts exactly the newest missed run under RunLatest, every missed one under RunAll and
none under Skip; Replace cancels a
long-running live run (it ends Cancelled) and the new one starts."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster import waiting
from flowpod_operator._decisions import scheduling

pytestmark = pytest.mark.cluster
CASES = "tests/operator/flows/operator_cases.py"


def _runs(api: harness.Api, ns: str, deployment: str) -> list[dict]:
    items = api.get(contract.flowrun_path(ns),
                    labelSelector=f"{contract.LABEL_DEPLOYMENT}={deployment}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def _deployment(api: harness.Api, ns: str, name: str) -> dict:
    return api.get(contract.deployment_path(ns, name)) or {}


def _wait(what: str, check, timeout: float = 60, explain=str):
    try:
        return waiting.wait_for(what, check, bool, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{explain()}") from None


def _t(text: str) -> datetime:
    return contract.parse_time(text)


def test_schedules_start_named_runs_on_time_forbid_waits_and_a_bad_one_is_not_ready(
        operators, api, flow_namespace):
    ns = flow_namespace
    proc = operators()
    api.create_deployment(ns, "broken", entrypoint=f"{CASES}:hello",
                          schedules=[{"interval": 5}, {"cron": "99 * * * *"}])
    api.create_deployment(ns, "tick", entrypoint=f"{CASES}:hello",
                          schedules=[{"interval": 3, "slug": "fast", "parameters": {"n": 5}}])
    api.create_deployment(ns, "single", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 5}, concurrencyPolicy="Forbid",
                          schedules=[{"interval": 2}])
    explain = proc.log_tail

    ready = _wait("broken's Ready condition", lambda: (
        _deployment(api, ns, "broken").get("status") or {}).get("conditions"), 30, explain)
    assert (ready[0]["status"], ready[0]["reason"]) == ("False", "InvalidSchedule")
    assert ready[0]["message"].startswith("spec.schedules[1].cron: '99 * * * *' is not a "
                                          "cron expression; write five fields")

    runs = _wait("three runs of tick", lambda: (lambda r: r if len(r) >= 3 else None)(
        _runs(api, ns, "tick")), 40, explain)
    for run in runs[:3]:
        due = _t(run["spec"]["scheduledTime"])
        assert run["metadata"]["name"] == f"tick-fast-{int(due.timestamp())}"
        assert int(due.timestamp()) % 3 == 0
        assert run["metadata"]["labels"][contract.LABEL_SCHEDULE] == "fast"
        assert run["metadata"]["ownerReferences"][0]["name"] == "tick"
        assert run["spec"]["parameters"] == {"n": 5}
        created = _t(run["metadata"]["creationTimestamp"])
        # creationTimestamp has whole seconds; the run is created within ~1 s of its time.
        assert timedelta(0) <= created - due <= timedelta(seconds=2), run["metadata"]
        final = api.wait_final(ns, run["metadata"]["name"], timeout=60, explain=explain)
        assert final["status"]["state"]["type"] == "COMPLETED"
    status = _deployment(api, ns, "tick")["status"]
    assert status["conditions"][0]["status"] == "True"
    assert status["schedule"] == "every 3s" and len(status["nextScheduleTimes"]) == 3
    assert status["lastRunName"].startswith("tick-fast-")

    # Nothing from broken, ever; and Forbid never starts a run while one is live.
    assert _runs(api, ns, "broken") == []
    single = _wait("two runs of single", lambda: (lambda r: r if len(r) >= 2 else None)(
        _runs(api, ns, "single")), 60, explain)
    first = api.wait_final(ns, single[0]["metadata"]["name"], timeout=60, explain=explain)
    assert first["status"]["state"]["type"] == "COMPLETED"
    assert _t(single[1]["metadata"]["creationTimestamp"]) >= \
        _t(first["status"]["endTime"]).replace(microsecond=0)


def test_missed_due_times_run_once_under_run_latest_all_under_run_all_none_under_skip(
        operators, api, flow_namespace):
    ns = flow_namespace
    interval, all_interval = 30, 4
    anchor = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    first = operators()
    for name, policy, every in (("latest", "RunLatest", interval), ("skip", "Skip", interval),
                                ("all", "RunAll", all_interval)):
        api.create_deployment(ns, name, entrypoint=f"{CASES}:hello", missedRunPolicy=policy,
                              schedules=[{"interval": every,
                                          "anchorDate": contract.format_time(anchor)}])
    for name in ("latest", "skip", "all"):
        _wait(f"{name}'s first run", lambda n=name: _runs(api, ns, n), 30, first.log_tail)
    first.stop()
    stopped = datetime.now(timezone.utc)
    # The first due time after each Deployment's creation (a slow create can pass the anchor).
    base = {name: min(_t(r["spec"]["scheduledTime"]) for r in _runs(api, ns, name))
            for name in ("latest", "skip", "all")}
    missed = {name: base[name] + timedelta(seconds=interval) for name in ("latest", "skip")}
    # Back once the missed due times are well past on-time, before the following ones.
    back = min(missed.values()) + timedelta(seconds=12)
    assert max(missed.values()) < back - scheduling.ON_TIME  # both really missed
    time.sleep(max(0.0, (back - datetime.now(timezone.utc)).total_seconds()))
    restarted = datetime.now(timezone.utc)
    second = operators()
    _wait("latest's missed run", lambda: len(_runs(api, ns, "latest")) >= 2, 20,
          second.log_tail)
    time.sleep(2)  # a second (wrong) run would have come by now
    # (On a slow machine the following due time may have come too: it is not part of this.)
    latest = [_t(r["spec"]["scheduledTime"]) for r in _runs(api, ns, "latest")]
    assert [t for t in latest if t <= missed["latest"]] == [base["latest"], missed["latest"]]
    skip = [_t(r["spec"]["scheduledTime"]) for r in _runs(api, ns, "skip")]
    assert [t for t in skip if t <= missed["skip"]] == [base["skip"]]
    # RunAll: one run for every due time, including each one missed while stopped, no gaps.
    times = sorted(_t(r["spec"]["scheduledTime"]) for r in _runs(api, ns, "all"))
    assert times == [base["all"] + timedelta(seconds=all_interval * i)
                     for i in range(len(times))]
    missed_all = [t for t in times if stopped < t <= restarted]
    assert len(missed_all) >= 5, (stopped, restarted, times)
    # Both go on scheduling after the restart.
    for name in ("latest", "skip"):
        following = missed[name] + timedelta(seconds=interval)
        _wait(f"{name}'s next run", lambda n=name, f=following: any(
            _t(r["spec"]["scheduledTime"]) == f for r in _runs(api, ns, n)),
            interval + 10, second.log_tail)


def _ran(run: dict) -> bool:
    history = (run.get("status") or {}).get("stateHistory") or []
    return harness.state_type(run) == "RUNNING" or any(
        h.get("type") == "RUNNING" for h in history)


def test_replace_cancels_the_live_run_and_starts_the_new_one(operators, api, flow_namespace):
    ns = flow_namespace
    interval = 15  # the first run must reach Running before the next due time, under load too
    proc = operators()
    api.create_deployment(ns, "replace", entrypoint=f"{CASES}:sleeps",
                          parameters={"seconds": 300}, concurrencyPolicy="Replace",
                          schedules=[{"interval": interval}])
    explain = proc.log_tail
    (first, *_) = _wait("the first run", lambda: _runs(api, ns, "replace"), 30, explain)
    name = first["metadata"]["name"]
    api.wait_flowrun(ns, name, _ran, what="Running", timeout=30, explain=explain)
    runs = _wait("the next due time's run", lambda: (lambda r: r if len(r) >= 2 else None)(
        _runs(api, ns, "replace")), interval + 20, explain)
    second = runs[1]
    assert _t(second["spec"]["scheduledTime"]) == \
        _t(first["spec"]["scheduledTime"]) + timedelta(seconds=interval)
    ended = api.wait_final(ns, name, timeout=60, explain=explain)
    assert ended["spec"]["cancel"] is True
    assert ended["status"]["state"]["type"] == "CANCELLED", ended["status"]["state"]
    api.wait_flowrun(ns, second["metadata"]["name"], _ran, what="Running", timeout=30,
                     explain=explain)
