"""The scheduler's runtime (flowpod_operator._runtime.scheduler) over a fake API: several
Deployments' due runs are created side by side; a status change that only summarises the
runs, or that the runs just created record themselves, waits (bounded) instead of costing a
write per run event; progress no run records is written at once."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from flowpod import contract
from flowpod_operator._decisions import scheduling
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.kubeapi import Reply
from flowpod_operator._runtime.scheduler import Scheduler

UTC = timezone.utc


class FakeApi:
    """Records calls; each create takes `create_seconds`, so overlap shows."""

    def __init__(self, create_seconds: float = 0.0) -> None:
        self.create_seconds = create_seconds
        self.in_flight = self.max_in_flight = 0
        self.created: list[str] = []
        self.status_writes: list[tuple[str, dict[str, Any]]] = []

    async def create_flowrun(self, namespace: str, manifest: Mapping[str, Any]) -> Reply:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.create_seconds)
        self.in_flight -= 1
        self.created.append(manifest["metadata"]["name"])
        return Reply(201, manifest)

    async def cancel_flowrun(self, namespace: str, name: str) -> None:
        raise AssertionError("nothing is replaced here")

    async def patch_deployment_status(self, namespace: str, name: str,
                                      status: Mapping[str, Any]) -> Reply:
        self.status_writes.append((name, dict(status)))
        return Reply(404, {})  # the index keeps the old status: every look compares to it


def _deployment(name: str, created: datetime, status: dict[str, Any] | None = None,
                interval: int = 3600) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}",
                         "generation": 1,
                         "creationTimestamp": contract.format_time(created, fraction=False)},
            "spec": {"entrypoint": "f.py:f", "image": "i",
                     "schedules": [{"interval": interval}]},
            "status": status or {}}


def _now() -> datetime:
    return datetime.now(UTC)


async def _until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_due_runs_of_different_deployments_are_created_side_by_side() -> None:
    async def scenario() -> FakeApi:
        api = FakeApi(create_seconds=0.3)
        index = Index()
        due_soon = _now() - timedelta(seconds=30)
        for name in ("a", "b", "c"):
            # Created 30 s ago, handled up to 3 s ago: the 1 s interval has runs due now.
            index.put_deployment(_deployment(name, due_soon, interval=1, status={
                "scheduledThrough": contract.format_time(_now() - timedelta(seconds=3),
                                                         fraction=False)}))
        scheduler = Scheduler(index, api, _now, lambda body: None)  # type: ignore[arg-type]
        tasks = scheduler.start()
        try:
            for name in ("a", "b", "c"):
                scheduler.queue.add(("ns", name))
            await _until(lambda: len(api.created) >= 3)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return api

    api = asyncio.run(scenario())
    assert api.max_in_flight == 3, "one Deployment's slow create held up the others"


def test_a_summary_only_change_waits_but_is_written_within_the_lag() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        api = FakeApi()
        index = Index()
        created = _now() - timedelta(seconds=5)
        bare = _deployment("etl", created)
        run = {"metadata": {"name": "etl-manual", "namespace": "ns",
                            "labels": {contract.LABEL_SCHEDULE: "0"}},
               "spec": {"deploymentName": "etl",
                        "scheduledTime": contract.format_time(created, fraction=False)},
               "status": {"state": {"type": "PENDING", "name": "Pending"}}}
        # The status as last written, when the run was still Scheduled.
        written = scheduling.plan(bare, [{**run, "status": {}}], _now()).status
        index.put_deployment(_deployment("etl", created, written))
        index.put_flowrun(run)
        scheduler = Scheduler(index, api, _now, lambda body: None,  # type: ignore[arg-type]
                              summary_lag=0.5)
        tasks = scheduler.start()
        try:
            scheduler.queue.add(("ns", "etl"))
            await asyncio.sleep(0.2)
            right_away = list(api.status_writes)
            await _until(lambda: len(api.status_writes) >= 1, timeout=2.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return right_away, api.status_writes

    right_away, later = asyncio.run(scenario())
    assert right_away == [], "a change only in lastRunState was written at once"
    assert [status["lastRunState"] for _, status in later] == ["Pending"]


def test_progress_a_created_run_records_is_written_between_due_times() -> None:
    # With every Deployment due in the same second, the creates come first; the status
    # write falls about half-way to the next due time (the run itself records the progress).
    async def scenario() -> tuple[list[str], list[Any], FakeApi]:
        # Intervals count from 2020-01-01 (whole multiples of 4 s since the epoch): start just
        # after a due time, so the next one is ~4 s away and half-way is ~2 s, not a moment.
        await asyncio.sleep((4.2 - time.time() % 4) % 4)
        api = FakeApi()
        index = Index()
        bare = _deployment("etl", _now() - timedelta(seconds=30), interval=4)
        # The status as written one due time ago (Ready, schedule, scheduledThrough).
        written = scheduling.plan(bare, [], _now() - timedelta(seconds=4)).status
        index.put_deployment(_deployment("etl", _now() - timedelta(seconds=30), written, 4))
        scheduler = Scheduler(index, api, _now, lambda body: None)  # type: ignore[arg-type]
        tasks = scheduler.start()
        try:
            scheduler.queue.add(("ns", "etl"))
            await _until(lambda: bool(api.created), timeout=1.0)
            await asyncio.sleep(0.3)
            early = (list(api.created), list(api.status_writes))
            await _until(lambda: bool(api.status_writes), timeout=3.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return early[0], early[1], api

    created_first, written_early, api = asyncio.run(scenario())
    assert created_first and written_early == [], "the status write came with the creates"
    (_, status), *_ = api.status_writes
    assert status["lastRunName"] == created_first[-1]
    assert contract.parse_time(status["scheduledThrough"]) > _now() - timedelta(seconds=6)


def test_progress_no_run_records_is_written_at_once() -> None:
    # Forbid skips a due time while a run is live: only scheduledThrough remembers that.
    async def scenario() -> FakeApi:
        api = FakeApi()
        index = Index()
        created = _now() - timedelta(seconds=30)
        deployment = _deployment("etl", created, interval=4, status={
            "scheduledThrough": contract.format_time(_now() - timedelta(seconds=5),
                                                     fraction=False)})
        deployment["spec"]["concurrencyPolicy"] = "Forbid"
        index.put_deployment(deployment)
        index.put_flowrun({"metadata": {"name": "etl-live", "namespace": "ns",
                                        "labels": {contract.LABEL_SCHEDULE: "0"}},
                           "spec": {"deploymentName": "etl", "scheduledTime":
                                    contract.format_time(created, fraction=False)},
                           "status": {"state": {"type": "RUNNING", "name": "Running"}}})
        scheduler = Scheduler(index, api, _now, lambda body: None)  # type: ignore[arg-type]
        tasks = scheduler.start()
        try:
            scheduler.queue.add(("ns", "etl"))
            await _until(lambda: bool(api.status_writes), timeout=0.5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return api

    api = asyncio.run(scenario())
    assert api.created == []
    assert contract.parse_time(api.status_writes[0][1]["scheduledThrough"]) > \
        _now() - timedelta(seconds=5)
