"""History limits at runtime: the final runs of a Deployment, read from the Index.

Role: `History.note` tells the decision of a final run whether it is past its Deployment's
`successfulRunsHistoryLimit` / `failedRunsHistoryLimit` (the pure selection is
flowpod_operator._decisions.cleanup); `History.victims` names the runs to look at again
when a run of the Deployment has just ended or the Deployment changed, so the clean-up
happens at once, without polling. Runs belong to a Deployment by their flowpod.io/deployment
label. Callers: flowpod_operator._runtime.loop (note), ._runtime.intake (victims).

The ranking of one Deployment's runs is cached until the Index says the group changed (a
run joined or left it, or one's state or end time changed) or the limits did: every final
run's decision asks, and after a restart with 10,000 final runs re-ranking them for each
would be 10,000 sorts of 10,000 runs.
"""

from __future__ import annotations

from typing import Any, Mapping

from flowpod import contract

from flowpod_operator._decisions import cleanup
from flowpod_operator._decisions.views import FlowRunView, Key
from flowpod_operator._runtime.indexing import Index

__all__ = ["History"]


class History:
    """History limits over the Index."""

    def __init__(self, index: Index) -> None:
        self.index = index
        # (namespace, deployment) -> (group version, limits, the runs beyond them)
        self._ranked: dict[tuple[str, str], tuple[int, tuple[int, int], dict[Key, str]]] = {}

    def _beyond(self, namespace: str, deployment: str) -> dict[Key, str]:
        group = (namespace, deployment)
        limits = cleanup.history_limits(self.index.deployment(namespace, deployment))
        version = self.index.history_version(namespace, deployment)
        cached = self._ranked.get(group)
        if cached is not None and cached[0] == version and cached[1] == limits:
            return cached[2]
        version, places = self.index.history_group(namespace, deployment)
        beyond = cleanup.beyond_history_ranked(places, *limits)
        if places:
            self._ranked[group] = (version, limits, beyond)
        else:
            self._ranked.pop(group, None)
        return beyond

    def note(self, body: Mapping[str, Any]) -> str | None:
        """Why this final run is past its Deployment's history limits; None: it is kept."""
        run = FlowRunView(body)
        deployment = run.meta.labels.get(contract.LABEL_DEPLOYMENT)
        if not deployment or run.state_type not in cleanup.SUCCESSFUL | cleanup.FAILED:
            return None
        return self._beyond(run.key[0], deployment).get(run.key)

    def victims(self, namespace: str, deployment: str | None) -> list[Key]:
        """The runs of the Deployment past its history limits."""
        return list(self._beyond(namespace, deployment)) if deployment else []
