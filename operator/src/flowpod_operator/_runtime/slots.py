"""Concurrency slots at runtime: the Index fed to the pure accounting, and the wake-ups.

Role: `Slots.verdict` gives the decision of a run not started yet its concurrency verdict
(flowpod_operator._decisions.limits), computed from the FlowRuns in the Index; `Slots.wake`
queues the waiting runs that fit once a run has released its slot (ended, or deleted), so a
waiting run starts at once, without polling. Nothing is counted up or down: every answer is
recomputed from what the Index shows, so a restarted operator (whose Index is rebuilt from
the start-up listing) sees the same slots. `starting` holds the runs whose start is in
flight (the Job being created, the status not yet written), which hold their slot too.
Callers: flowpod_operator._runtime.loop (verdict, starting), ._runtime.intake (wake).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator, Mapping

from flowpod_operator._decisions import limits
from flowpod_operator._decisions.views import FlowRunView, Key
from flowpod_operator._runtime.indexing import Index

__all__ = ["Slots"]


class Slots:
    """Slot accounting over the Index, for one operator."""

    def __init__(self, index: Index, clock: Callable[[], datetime],
                 max_runs: int | None = None) -> None:
        self.index = index
        self.clock = clock
        self.max_runs = max_runs
        self.starting: set[Key] = set()

    def _limited(self, namespace: str, deployment: str | None) -> limits.Limit | None:
        return limits.limit_of(self.index.deployment(namespace, deployment)) \
            if deployment else None

    def _peers(self, group: tuple[str, str] | None, now: datetime) -> Iterator[limits.Peer]:
        """The unfinished runs of one Deployment (`group`), or of all when None."""
        items = self.index.flowrun_items() if group is None else self.index.runs_of(*group)
        for key, body in items:
            peer = limits.peer_of(body, now, starting=key in self.starting
                                  or self.index.has_jobs(key))
            if peer is not None:
                yield peer

    def _scope(self, namespace: str, deployment: str | None
               ) -> tuple[tuple[str, str] | None, dict[tuple[str, str], limits.Limit]] | None:
        """Which runs compete (one Deployment's, or all) and the limits among them; None
        when no limit applies to a run of this Deployment."""
        if self.max_runs is not None:
            table: dict[tuple[str, str], limits.Limit] = {}
            for (ns, name), body in self.index.deployment_items():
                limit = limits.limit_of(body)
                if limit is not None:
                    table[(ns, name)] = limit
            return None, table
        limit = self._limited(namespace, deployment)
        if limit is None or deployment is None:
            return None
        return (namespace, deployment), {(namespace, deployment): limit}

    def verdict(self, body: Mapping[str, object]) -> limits.Verdict | None:
        """The concurrency verdict of a run that has not started; None: no limit applies,
        or the run is not waiting for a slot."""
        run = FlowRunView(body)  # type: ignore[arg-type]
        if run.attempt or run.state_type not in (None, "SCHEDULED"):
            return None
        scope = self._scope(run.key[0], run.deployment_name)
        if scope is None:
            return None
        group, table = scope
        return limits.verdict(run.key, self._peers(group, self.clock()), table, self.max_runs)

    def wake(self, namespace: str, deployment: str | None) -> list[Key]:
        """The waiting runs that fit now that a run of this Deployment released its slot."""
        scope = self._scope(namespace, deployment)
        if scope is None:
            return []
        group, table = scope
        return limits.admitted(self._peers(group, self.clock()), table, self.max_runs)
