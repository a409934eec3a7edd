"""Leader election: only the holder of a coordination.k8s.io/v1 Lease runs the operator.

Role: `lead(client, lease, body, stop, on_standby)` campaigns for the Lease with
kubernetes-asyncio's `leaderelection` (the client-go protocol: holderIdentity, renewTime,
leaseDurationSeconds; a standby takes over once the holder has not renewed for the lease
duration) and only then runs `body` (kopf's watches and the Reconciler). A standby runs
nothing but the campaign, so it never writes. Callers: flowpod_operator.running.

What this module adds to the library, and why:
- the leader never outlives its Lease: losing it, failing to renew within the renew
  deadline (even while a renew request hangs, which the library alone would wait out), or
  any error of the campaign raises `LostLease` at once, so the process exits non-zero and
  the Deployment restarts it as a standby; two leaders never write at once;
- a graceful stop releases the Lease (empty holder, as client-go's ReleaseOnCancel does),
  so a standby takes over at its next retry instead of after the lease duration;
- a standby looks at the Lease four times per retry period: it times the expiry from when it
  saw the last renewal (its own clock, as client-go does), so polling at the leader's pace
  would add up to two retry periods to every takeover.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

__all__ = ["LeaseSettings", "LostLease", "lead", "default_identity"]

_log = logging.getLogger("flowpod_operator.leading")
_STANDBY_POLLS = 4  # Lease reads per retry period while standing by


class LostLease(RuntimeError):
    """This process led and no longer holds the Lease: it must stop writing now."""


@dataclass(frozen=True)
class LeaseSettings:
    """Which Lease to hold and how; the defaults are Kubernetes' own (15 s / 10 s / 2 s)."""

    name: str
    namespace: str
    identity: str
    duration_seconds: int = 15
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0

    def check(self) -> None:
        """Raise ValueError naming the flag when the timings cannot work together."""
        if self.retry_period_seconds < 1:
            raise ValueError("--lease-retry-period must be at least 1 second")
        if self.renew_deadline_seconds <= 1.2 * self.retry_period_seconds:
            raise ValueError("--lease-renew-deadline must be more than 1.2 x "
                             "--lease-retry-period (a renew needs room for a retry)")
        if self.duration_seconds <= self.renew_deadline_seconds:
            raise ValueError("--lease-duration must be longer than --lease-renew-deadline, "
                             "or a standby could take over while the leader still renews")


def default_identity() -> str:
    """The pod's name (POD_NAME, from the downward API in the chart), else hostname-pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class _Election(LeaderElection):
    """The library's election, with a standby that polls faster than the leader renews."""

    async def acquire(self) -> bool:
        poll = self.election_config.retry_period / _STANDBY_POLLS
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(poll)
        return True


class _TimedLeaseLock(LeaseLock):
    """The library's LeaseLock, remembering when this process last wrote the Lease."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.last_write = 0.0

    async def create(self, name: str, namespace: str,
                     election_record: LeaderElectionRecord) -> bool:
        started = time.monotonic()
        created = await super().create(name, namespace, election_record)
        if created:
            self.last_write = started
        return created

    async def update(self, name: str, namespace: str,
                     updated_record: LeaderElectionRecord) -> bool:
        # The renew counts from when it was sent: the Lease says renewTime = then.
        started = time.monotonic()
        updated = await super().update(name, namespace, updated_record)
        if updated:
            self.last_write = started
        return updated


async def lead(api_client: ApiClient, lease: LeaseSettings,
               body: Callable[[], Awaitable[None]], *, stop: asyncio.Event | None = None,
               on_standby: Callable[[str], None] = lambda _: None) -> None:
    """Stand by until this process holds `lease`, then run `body` while it holds it.

    Returns when `body` returns (a graceful stop), releasing the Lease; raises `LostLease`
    the moment the Lease is lost. A stop while standing by returns without leading.
    """
    lease.check()
    lock = _TimedLeaseLock(lease.name, lease.namespace, lease.identity, api_client)
    acquired = asyncio.Event()

    async def started() -> None:
        acquired.set()

    election = _Election(Config(
        lock, lease.duration_seconds, lease.renew_deadline_seconds,
        lease.retry_period_seconds, onstarted_leading=started,
        onstopped_leading=_nothing))
    on_standby(f"standby: campaigning for Lease {lease.namespace}/{lease.name} "
               f"as {lease.identity}")
    _log.info("standing by", extra={"lease": f"{lease.namespace}/{lease.name}",
                                    "identity": lease.identity})
    campaign = asyncio.create_task(election.run(), name="lease-campaign")
    try:
        if not await _first(acquired.wait(), campaign, stop):
            return
        _log.info("leading", extra={"lease": f"{lease.namespace}/{lease.name}",
                                    "identity": lease.identity})
        work = asyncio.create_task(body(), name="leader-work")
        watchdog = asyncio.create_task(_watch_renewals(lock, lease), name="lease-watchdog")
        try:
            await asyncio.wait({work, campaign, watchdog},
                               return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                raise LostLease(_why_lost(campaign, watchdog, lease))
            work.result()
        finally:
            for task in (work, watchdog):
                task.cancel()
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
        await _release(api_client, lease)
    finally:
        campaign.cancel()


async def _first(acquired: Awaitable[bool], campaign: asyncio.Task[None],
                 stop: asyncio.Event | None) -> bool:
    """Wait until the Lease is ours (True) or a stop comes first (False)."""
    waiters = {asyncio.ensure_future(acquired)}
    if stop is not None:
        waiters.add(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters | {campaign}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if campaign.done():
        # The library only returns from campaigning after leading; an error ends it early.
        raise LostLease(f"the Lease campaign ended: {campaign.exception()!r}")
    return not (stop is not None and stop.is_set())


async def _watch_renewals(lock: _TimedLeaseLock, lease: LeaseSettings) -> None:
    """Return once the last successful renew is older than the renew deadline."""
    step = min(0.5, lease.retry_period_seconds / 2)
    while time.monotonic() - lock.last_write <= lease.renew_deadline_seconds:
        await asyncio.sleep(step)


def _why_lost(campaign: asyncio.Task[None], watchdog: asyncio.Task[None],
              lease: LeaseSettings) -> str:
    where = f"Lease {lease.namespace}/{lease.name}"
    if campaign.done() and not campaign.cancelled() and campaign.exception() is not None:
        return f"renewing {where} failed: {campaign.exception()!r}"
    if watchdog.done():
        return (f"{where} not renewed within the renew deadline "
                f"({lease.renew_deadline_seconds:g}s)")
    return f"{where} lost: another candidate holds it or it could not be renewed"


async def _release(api_client: ApiClient, lease: LeaseSettings) -> None:
    """Hand the Lease back so a standby takes over at once (no wait for expiry)."""
    api = k8s.CoordinationV1Api(api_client)
    try:
        current = await api.read_namespaced_lease(lease.name, lease.namespace)
        if current.spec is None or current.spec.holder_identity != lease.identity:
            return
        now = datetime.now(timezone.utc)
        # The resourceVersion read above is a precondition: a newer holder is never undone.
        current.spec.holder_identity = None
        current.spec.lease_duration_seconds = 1
        current.spec.renew_time = now
        current.spec.acquire_time = now
        await api.replace_namespaced_lease(lease.name, lease.namespace, current)
        _log.info("released the Lease", extra={"lease": f"{lease.namespace}/{lease.name}"})
    except Exception as exc:  # noqa: BLE001 - a failed release only delays the takeover
        _log.warning("could not release the Lease; a standby takes over when it expires",
                     extra={"lease": f"{lease.namespace}/{lease.name}", "error": repr(exc)})


async def _nothing() -> None:
    return None
