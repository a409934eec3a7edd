"""Concurrency slots: which waiting runs may start now, and why the others wait.

Role: pure slot accounting for `spec.concurrencyLimit` on a Deployment and the operator-wide
`--max-concurrent-runs`. The runtime (flowpod_operator._runtime.slots) turns the FlowRuns of
its Index into `Peer`s; `admitted` says which waiting runs fit, and `verdict` what one run
does (start, wait with a message, or end Cancelled under `collisionStrategy: CancelNew`).

Why it is race-free inside one operator: nothing is counted up or down. A slot is held by
every run observed as started and not final (and by a run whose start is in flight, which
the runtime reports as `holding`), and the waiting runs are ranked oldest first
(creationTimestamp, then namespace and name). Every decision recomputes the same ranking
from the same picture, so two workers deciding about two waiting runs at once agree on which
of them fits; a run that ends or is deleted simply stops being counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from flowpod import contract

from flowpod_operator._decisions.views import FlowRunView, Key

__all__ = ["Peer", "Limit", "Verdict", "ENQUEUE", "CANCEL_NEW", "peer_of", "limit_of",
           "admitted", "verdict", "HOLDING_STATES"]

ENQUEUE = "Enqueue"
CANCEL_NEW = "CancelNew"
# Started and not final: these runs hold a slot (a run awaiting an infrastructure retry is
# SCHEDULED with an attempt recorded, and holds one too; see `peer_of`).
HOLDING_STATES = frozenset({"PENDING", "RUNNING", "CANCELLING", "PAUSED"})
_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

DeploymentKey = tuple[str, str]  # (namespace, Deployment name)


@dataclass(frozen=True)
class Peer:
    """One unfinished FlowRun as the accounting sees it."""

    key: Key
    created: str
    deployment: str | None
    holding: bool  # holds a slot: started, or its start is in flight

    @property
    def order(self) -> tuple[str, str, str]:
        return self.created, self.key[0], self.key[1]

    @property
    def group(self) -> DeploymentKey | None:
        return (self.key[0], self.deployment) if self.deployment else None


@dataclass(frozen=True)
class Limit:
    """A Deployment's limit: at most `runs` at once; what a run that does not fit does."""

    runs: int
    strategy: str = ENQUEUE


@dataclass(frozen=True)
class Verdict:
    """What a waiting run does: start, or not (then `message` says why; `cancel` ends it)."""

    start: bool
    message: str = ""
    cancel: bool = False


START = Verdict(True)


def _due(body: Mapping[str, Any], now: datetime) -> bool:
    when = contract.parse_time_or_none((body.get("spec") or {}).get("scheduledTime"))
    return when is None or when <= now


def peer_of(body: Mapping[str, Any], now: datetime, *, starting: bool = False) -> Peer | None:
    """The run as a Peer, or None when it neither holds nor waits for a slot (final, not
    yet due, or cancelled before it started). `starting`: the runtime is starting it, or it
    has a Job the status does not record yet."""
    run = FlowRunView(body)
    state = run.state_type
    if state in _FINAL:
        return None
    holding = starting or state in HOLDING_STATES or run.attempt > 0
    if not holding and (state not in (None, "SCHEDULED") or run.spec.get("cancel")
                        or not _due(body, now)):
        return None
    created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
    return Peer(run.key, created, run.deployment_name, holding)


def limit_of(deployment: Mapping[str, Any] | None) -> Limit | None:
    """The Deployment's concurrency limit, None when it sets none."""
    spec = (deployment or {}).get("spec") or {}
    runs = spec.get("concurrencyLimit")
    if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
        return None
    return Limit(runs, spec.get("collisionStrategy") or ENQUEUE)


def _fits_deployment(peers: list[Peer], limits: Mapping[DeploymentKey, Limit]
                     ) -> tuple[list[Peer], dict[DeploymentKey, int]]:
    """The waiting runs that fit their Deployment's limit (oldest first), and how many slots
    each limited Deployment has taken (holders plus the runs that fit)."""
    taken: dict[DeploymentKey, int] = {}
    for peer in peers:
        if peer.holding and peer.group in limits:
            taken[peer.group] = taken.get(peer.group, 0) + 1  # type: ignore[index]
    fit = []
    for peer in sorted((p for p in peers if not p.holding), key=lambda p: p.order):
        limit = limits.get(peer.group) if peer.group else None
        if limit is None:
            fit.append(peer)
        elif taken.get(peer.group, 0) < limit.runs:  # type: ignore[arg-type]
            taken[peer.group] = taken.get(peer.group, 0) + 1  # type: ignore[index]
            fit.append(peer)
    return fit, taken


def admitted(peers: Iterable[Peer], limits: Mapping[DeploymentKey, Limit],
             max_runs: int | None = None) -> list[Key]:
    """The waiting runs that may start now, oldest first: per Deployment the oldest that fit
    its limit, then of those the oldest that fit the operator-wide `max_runs`."""
    peers = list(peers)
    fit, _ = _fits_deployment(peers, limits)
    if max_runs is not None:
        free = max(max_runs - sum(p.holding for p in peers), 0)
        fit = fit[:free]
    return [p.key for p in fit]


def verdict(key: Key, peers: Iterable[Peer], limits: Mapping[DeploymentKey, Limit],
            max_runs: int | None = None) -> Verdict:
    """What the waiting run `key` (one of `peers`) does now."""
    peers = list(peers)
    me = next((p for p in peers if p.key == key), None)
    if me is None or me.holding:
        return START
    fit, taken = _fits_deployment(peers, limits)
    if me not in fit:
        assert me.group is not None  # only a limited Deployment's run can miss
        limit = limits[me.group]
        active = f"{taken.get(me.group, 0)}/{limit.runs} runs of deployment {me.deployment}"
        if limit.strategy == CANCEL_NEW:
            return Verdict(False, f"Cancelled: concurrency limit reached ({active} active; "
                                  f"spec.concurrencyLimit {limit.runs} with collisionStrategy "
                                  f"{CANCEL_NEW})", cancel=True)
        return Verdict(False, f"waiting for a concurrency slot: {active} active")
    if max_runs is None:
        return START
    holders = sum(p.holding for p in peers)
    rank = fit.index(me)
    if holders + rank < max_runs:
        return START
    return Verdict(False, f"waiting for a concurrency slot: {min(holders + rank, max_runs)}/"
                          f"{max_runs} runs active operator-wide (--max-concurrent-runs)")
