"""Leader election without a cluster: the flags and their checks, the standby's /healthz,
the identity, and the renew watchdog that ends a leader whose renewals stall.
tests/operator/test_operator_ha.py runs two operators on the real plane."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from flowpod_operator import running
from flowpod_operator._runtime import leading, serving
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.metrics import Metrics


def _options(*argv: str) -> running.OperatorOptions:
    return running.options_from_args(running.build_parser().parse_args(list(argv)))


def test_leader_election_is_off_by_default_with_kubernetes_timings():
    options = _options()
    assert not options.leader_election
    lease = options.lease("ops")
    assert (lease.name, lease.namespace) == ("flowpod-operator", "ops")
    assert (lease.duration_seconds, lease.renew_deadline_seconds,
            lease.retry_period_seconds) == (15, 10.0, 2.0)


def test_lease_flags():
    options = _options("--leader-election", "--lease-name", "shard", "--lease-namespace", "x",
                       "--lease-duration", "8", "--lease-renew-deadline", "5",
                       "--lease-retry-period", "1")
    assert options.leader_election
    lease = options.lease("ignored")
    assert (lease.name, lease.namespace, lease.duration_seconds,
            lease.renew_deadline_seconds, lease.retry_period_seconds) == ("shard", "x", 8, 5, 1)


@pytest.mark.parametrize("argv, message", [
    (["--lease-duration", "10", "--lease-renew-deadline", "10"],
     "--lease-duration must be longer than --lease-renew-deadline"),
    (["--lease-renew-deadline", "2", "--lease-retry-period", "2"],
     "--lease-renew-deadline must be more than 1.2 x --lease-retry-period"),
    (["--lease-retry-period", "0.5"], "--lease-retry-period must be at least 1 second"),
])
def test_lease_timings_that_cannot_work_name_the_flag(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        running.main(["--leader-election", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_identity_is_the_pod_name_else_hostname_and_pid(monkeypatch):
    monkeypatch.setenv("POD_NAME", "flowpod-operator-7d9f-abcde")
    assert leading.default_identity() == "flowpod-operator-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    assert leading.default_identity().startswith(f"{socket.gethostname()}-")


def test_a_standby_is_healthy_and_says_so():
    async def scenario() -> list[tuple[int, str]]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ready, why = asyncio.Event(), ["standby: campaigning for Lease ops/flowpod-operator"]
        runner = await serving.start_endpoints(
            "127.0.0.1", port, ready, Metrics(Index().flowrun_items),
            standby=lambda: why[0] if why else None)
        seen = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for step in ("standby", "leading", "ready"):
                    if step == "leading":
                        why.clear()
                    if step == "ready":
                        ready.set()
                    response = await http.get("/healthz")
                    seen.append((response.status_code, response.text))
        finally:
            await runner.cleanup()
        return seen

    assert asyncio.run(scenario()) == [
        (200, "standby: campaigning for Lease ops/flowpod-operator\n"),
        (503, "starting\n"), (200, "ok\n")]


def test_the_watchdog_ends_leadership_when_renewals_stall():
    class Lock:
        last_write = 0.0

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        lock = Lock()
        lock.last_write = loop.time()
        settings = leading.LeaseSettings("l", "ns", "me", 3, 1.5, 1)
        # Renewals stop at once: the watchdog returns (and the leader exits) after the
        # renew deadline, never before.
        await asyncio.wait_for(leading._watch_renewals(lock, settings), timeout=30)
        return loop.time() - lock.last_write

    assert asyncio.run(scenario()) > 1.5
