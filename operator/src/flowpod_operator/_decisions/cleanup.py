"""Clean-up of finished runs: which final FlowRuns to delete, and when.

Role: pure selection for the two clean-up rules. `expires_at` reads a final run's
`ttlSecondsAfterFinished` (the run's own, else its Deployment's, else the operator's
default) and says when it may be deleted. `beyond_history` ranks the final runs of one
Deployment newest first and names those past `successfulRunsHistoryLimit` (Completed runs)
or `failedRunsHistoryLimit` (Failed, Crashed and Cancelled runs). Only final runs are ever
selected: a run that has not ended is never a candidate, nor is a run another run started
(flowpod.run_deployment: an ownerReference to a FlowRun), which its parent may still read
and which the garbage collector deletes with that parent. Callers:
flowpod_operator._decisions.deciding (a final run deletes itself when a rule says so) and
flowpod_operator._runtime.loop (feeds the Deployment's final runs from the Index).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from flowpod import contract

from flowpod_operator._decisions.views import FlowRunView, Key, Meta

__all__ = ["expires_at", "beyond_history", "beyond_history_ranked", "ranked", "Ranked",
           "history_limits", "SUCCESSFUL", "FAILED",
           "DEFAULT_SUCCESSFUL_HISTORY", "DEFAULT_FAILED_HISTORY"]

SUCCESSFUL = frozenset({"COMPLETED"})
FAILED = frozenset({"FAILED", "CRASHED", "CANCELLED"})
# The CRD's defaults (crds.resources.DeploymentSpec), for Deployments read before they had
# the fields.
DEFAULT_SUCCESSFUL_HISTORY = 10
DEFAULT_FAILED_HISTORY = 5


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _ended(body: Mapping[str, Any]) -> datetime | None:
    status = body.get("status") or {}
    return contract.parse_time_or_none(status.get("endTime")) or contract.parse_time_or_none(
        (status.get("state") or {}).get("timestamp"))


def expires_at(flowrun: Mapping[str, Any], deployment: Mapping[str, Any] | None,
               default_ttl: int | None) -> tuple[datetime, int] | None:
    """(when, ttl seconds) a final run may be deleted; None when it is kept."""
    ttl = _int((flowrun.get("spec") or {}).get("ttlSecondsAfterFinished"))
    if ttl is None:
        ttl = _int(((deployment or {}).get("spec") or {}).get("ttlSecondsAfterFinished"))
    if ttl is None:
        ttl = default_ttl
    ended = _ended(flowrun)
    if ttl is None or ended is None or FlowRunView(flowrun).state_type not in SUCCESSFUL | FAILED:
        return None
    return ended + timedelta(seconds=ttl), ttl


def history_limits(deployment: Mapping[str, Any] | None) -> tuple[int, int]:
    """(successful, failed) runs of the Deployment to keep."""
    spec = (deployment or {}).get("spec") or {}
    ok = _int(spec.get("successfulRunsHistoryLimit"))
    bad = _int(spec.get("failedRunsHistoryLimit"))
    return (DEFAULT_SUCCESSFUL_HISTORY if ok is None else ok,
            DEFAULT_FAILED_HISTORY if bad is None else bad)


def _newest_first(body: Mapping[str, Any]) -> tuple[str, str, str]:
    ended = _ended(body)
    meta = body.get("metadata") or {}
    return (contract.format_time(ended) if ended else "",
            str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _has_parent_run(body: Mapping[str, Any]) -> bool:
    return any(ref.get("kind") == contract.KIND_FLOW_RUN
               for ref in Meta(body).owner_references)


# What the history limits rank a run by: (newest-first sort key, "ok" or "bad", its key).
Ranked = tuple[tuple[str, str, str], str, Key]


def ranked(body: Mapping[str, Any]) -> Ranked | None:
    """A run's place in its Deployment's history; None when it is never a candidate (not
    final, or started by another run, whose parent keeps it)."""
    state = FlowRunView(body).state_type
    kind = "ok" if state in SUCCESSFUL else "bad" if state in FAILED else None
    if kind is None or _has_parent_run(body):
        return None
    return _newest_first(body), kind, FlowRunView(body).key


def beyond_history(runs: Iterable[Mapping[str, Any]], successful: int, failed: int
                   ) -> dict[Key, str]:
    """The final runs (of one Deployment) past its history limits, each with the reason."""
    return beyond_history_ranked(map(ranked, runs), successful, failed)


def beyond_history_ranked(entries: Iterable[Ranked | None], successful: int, failed: int
                          ) -> dict[Key, str]:
    """`beyond_history` of runs already ranked (`ranked`), as the Index keeps them."""
    kept = {"ok": successful, "bad": failed}
    out: dict[Key, str] = {}
    for _, kind, key in sorted(filter(None, entries), reverse=True):
        if kept[kind] > 0:
            kept[kind] -= 1
            continue
        field, limit = (("successfulRunsHistoryLimit", successful) if kind == "ok"
                        else ("failedRunsHistoryLimit", failed))
        out[key] = f"beyond the Deployment's {field} of {limit}"
    return out
