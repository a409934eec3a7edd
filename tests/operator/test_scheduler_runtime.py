"""The scheduler's runtime (flowpod_operator._runtime.scheduler) over a fake API: several
Deployments' due runs are created side by side, and a status change that only summarises the
runs waits (bounded) instead of costing a write per run event."""

from __future__ import annotations

import asyncio
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


def test_progress_is_written_at_once_with_the_runs_it_started() -> None:
    async def scenario() -> FakeApi:
        api = FakeApi()
        index = Index()
        index.put_deployment(_deployment("etl", _now() - timedelta(seconds=30), interval=1,
                                         status={"scheduledThrough": contract.format_time(
                                             _now() - timedelta(seconds=3), fraction=False)}))
        scheduler = Scheduler(index, api, _now, lambda body: None)  # type: ignore[arg-type]
        tasks = scheduler.start()
        try:
            scheduler.queue.add(("ns", "etl"))
            await _until(lambda: bool(api.status_writes), timeout=1.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return api

    api = asyncio.run(scenario())
    (_, status), *_ = api.status_writes
    assert api.created and status["lastRunName"] == api.created[-1]
    assert contract.parse_time(status["scheduledThrough"]) > _now() - timedelta(seconds=2)
