"""The operator's in-memory picture of the cluster: FlowRuns, Deployments, Jobs and Pods.

Role: fed by the watch intake (flowpod_operator._runtime.intake) and by the API responses of
the operator's own writes (flowpod_operator._runtime.actuator); read to build an `Observation` per
FlowRun, so a reconcile never lists the API. Jobs and Pods are grouped under the FlowRun they
belong to; a deleted pod is kept as a tombstone (its last body), because how it vanished is
part of the diagnosis ("pod deleted", "node lost"). Everything runs on one event loop, so
plain dicts need no locks.

What is stored is what is read (flowpod_operator._runtime.slimming): a final FlowRun as its
slim form, every other object without managedFields. Two look-ups keep a decision from
scanning every run the operator knows, which grows with the history: the runs a run owns
(by the owner's uid), and the runs counted against a Deployment's history limits (by the
flowpod.io/deployment label), with a version per such group that changes only when what
the limits rank by changes (flowpod_operator._runtime.history caches on it).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from flowpod import contract, states

from flowpod_operator._decisions import cleanup, diagnosing
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import owned
from flowpod_operator._decisions.views import FlowRunView, Key, Meta
from flowpod_operator._runtime.slimming import slim_flowrun, without_managed_fields

__all__ = ["Key", "Index", "key_of_flowrun", "key_of_child"]

_TERMINAL_WIRE = frozenset(t.value for t in states.TERMINAL_TYPES)


def key_of_flowrun(body: Mapping[str, Any]) -> Key:
    return FlowRunView(body).key


def key_of_child(body: Mapping[str, Any]) -> Key | None:
    """The FlowRun a Job or Pod belongs to, or None for objects that are not ours."""
    meta = Meta(body)
    name = meta.annotations.get(obs.ANNOTATION_FLOW_RUN)
    if not name:
        for ref in meta.owner_references:
            if ref.get("kind") == contract.KIND_FLOW_RUN and ref.get("controller"):
                name = ref.get("name")
    if not name:
        name = meta.labels.get(contract.LABEL_FLOW_RUN)
    return (meta.namespace, name) if name and meta.namespace else None


def _is_older(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    return Meta(new).is_older_than(old)


def _history_group(key: Key, body: Mapping[str, Any]) -> tuple[str, str] | None:
    deployment = Meta(body).labels.get(contract.LABEL_DEPLOYMENT)
    return (key[0], deployment) if deployment else None


def _owner_uids(body: Mapping[str, Any]) -> list[str]:
    return [uid for ref in Meta(body).owner_references if (uid := ref.get("uid"))]


class Index:
    """Latest known bodies, keyed for the decision function's needs."""

    def __init__(self) -> None:
        self._flowruns: dict[Key, Mapping[str, Any]] = {}
        self._deployments: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._jobs: dict[Key, dict[str, Mapping[str, Any]]] = {}
        self._pods: dict[Key, dict[str, Mapping[str, Any]]] = {}
        self._gone: dict[Key, dict[str, Mapping[str, Any]]] = {}
        # (namespace, Deployment) -> its FlowRuns: the scheduler looks up a Deployment's runs
        # at every due time, and a scan of every known run there grows with the history.
        self._by_deployment: dict[tuple[str, str], set[Key]] = {}
        # (namespace, flowpod.io/deployment label) -> its FlowRuns with their place in the
        # history (cleanup.ranked, computed once per change), and a version per group.
        self._by_history: dict[tuple[str, str], dict[Key, cleanup.Ranked | None]] = {}
        self._history_versions: dict[tuple[str, str], int] = {}
        # (namespace, owner uid) -> the FlowRuns naming it among their ownerReferences.
        self._by_owner: dict[tuple[str, str], set[Key]] = {}

    # --- FlowRuns --------------------------------------------------------------------------
    def put_flowrun(self, body: Mapping[str, Any]) -> bool:
        """Store the body; False when it is older than the one already known."""
        key = key_of_flowrun(body)
        old = self._flowruns.get(key)
        if _is_older(body, old):
            return False
        body = slim_flowrun(body)
        if old is not None:
            self._unlink(key, old, body)
        self._flowruns[key] = body
        self._link(key, body, old)
        return True

    def _link(self, key: Key, body: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        deployment = FlowRunView(body).deployment_name
        if deployment:
            self._by_deployment.setdefault((key[0], deployment), set()).add(key)
        for uid in _owner_uids(body):
            self._by_owner.setdefault((key[0], uid), set()).add(key)
        group = _history_group(key, body)
        if group is not None:
            members = self._by_history.setdefault(group, {})
            entry = cleanup.ranked(body)
            if key not in members or members[key] != entry:
                members[key] = entry
                self._bump(group)

    def _unlink(self, key: Key, body: Mapping[str, Any],
                new: Mapping[str, Any] | None = None) -> None:
        _discard(self._by_deployment, (key[0], FlowRunView(body).deployment_name or ""), key)
        for uid in _owner_uids(body):
            _discard(self._by_owner, (key[0], uid), key)
        group = _history_group(key, body)
        if group is not None and (new is None or _history_group(key, new) != group):
            members = self._by_history.get(group, {})
            members.pop(key, None)
            if not members:
                self._by_history.pop(group, None)
            self._bump(group)

    def _bump(self, group: tuple[str, str]) -> None:
        self._history_versions[group] = self._history_versions.get(group, 0) + 1

    def history_group(self, namespace: str, deployment: str
                      ) -> tuple[int, list[cleanup.Ranked | None]]:
        """(version, places) of the FlowRuns labelled with this Deployment
        (flowpod_operator._decisions.cleanup.ranked); the version changes whenever a member
        joins, leaves, or changes what the limits rank by."""
        group = (namespace, deployment)
        return (self._history_versions.get(group, 0),
                list(self._by_history.get(group, {}).values()))

    def history_version(self, namespace: str, deployment: str) -> int:
        return self._history_versions.get((namespace, deployment), 0)

    def remove_flowrun(self, key: Key) -> None:
        old = self._flowruns.pop(key, None)
        if old is not None:
            self._unlink(key, old)
        # Its Jobs and Pods are garbage-collected through their ownerReferences; their own
        # deletion events clean the live maps, the tombstones go with the run.
        self._gone.pop(key, None)

    def flowrun(self, key: Key) -> Mapping[str, Any] | None:
        return self._flowruns.get(key)

    def keys(self) -> list[Key]:
        return list(self._flowruns)

    def flowrun_items(self) -> list[tuple[Key, Mapping[str, Any]]]:
        return list(self._flowruns.items())

    def unfinished_keys(self) -> list[Key]:
        """FlowRuns not yet final, or final with a pod still alive: the resync set."""
        out = []
        for key, body in self._flowruns.items():
            state = FlowRunView(body).state_type
            pods = self._pods.get(key, {}).values()
            if state not in _TERMINAL_WIRE or not all(map(diagnosing.is_terminated, pods)):
                out.append(key)
        return out

    def waiting_for_deployment(self, namespace: str, name: str) -> list[Key]:
        """FlowRuns of a Deployment that have not started an attempt yet."""
        views = (FlowRunView(self._flowruns[key])
                 for key in self._by_deployment.get((namespace, name), ()))
        return sorted(run.key for run in views if not run.attempt)

    def runs_of(self, namespace: str, deployment: str) -> list[tuple[Key, Mapping[str, Any]]]:
        """The FlowRuns of one Deployment, by key (without scanning the others)."""
        return [(key, self._flowruns[key])
                for key in sorted(self._by_deployment.get((namespace, deployment), ()))]

    def scheduled_runs(self, namespace: str, deployment: str) -> list[Mapping[str, Any]]:
        """The FlowRuns a Deployment's schedules started (they carry the schedule label)."""
        bodies = (self._flowruns[key]
                  for key in sorted(self._by_deployment.get((namespace, deployment), ())))
        return [body for body in bodies if contract.LABEL_SCHEDULE in Meta(body).labels]

    # --- Deployments -----------------------------------------------------------------------
    def put_deployment(self, body: Mapping[str, Any]) -> None:
        meta = Meta(body)
        self._deployments[(meta.namespace or "", meta.name or "")] = without_managed_fields(body)

    def remove_deployment(self, namespace: str, name: str) -> None:
        self._deployments.pop((namespace, name), None)

    def deployment(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._deployments.get((namespace, name))

    def deployment_items(self) -> list[tuple[tuple[str, str], Mapping[str, Any]]]:
        return list(self._deployments.items())

    # --- Jobs and Pods ---------------------------------------------------------------------
    def put_job(self, body: Mapping[str, Any]) -> Key | None:
        return self._put(self._jobs, body)

    def remove_job(self, body: Mapping[str, Any]) -> Key | None:
        key = key_of_child(body)
        if key is not None:
            self._jobs.get(key, {}).pop(Meta(body).name, None)
        return key

    def drop_job(self, key: Key, name: str) -> None:
        self._jobs.get(key, {}).pop(name, None)

    def put_pod(self, body: Mapping[str, Any]) -> Key | None:
        key = key_of_child(body)
        if key is not None and Meta(body).name in self._gone.get(key, {}):
            return key  # a late event of a pod already seen deleted
        return self._put(self._pods, body)

    def remove_pod(self, body: Mapping[str, Any]) -> Key | None:
        key = key_of_child(body)
        if key is None:
            return None
        name = Meta(body).name or ""
        last = self._pods.get(key, {}).pop(name, None)
        # The deletion event carries the final body; keep whichever is newer.
        keep = last if last is not None and _is_older(body, last) else without_managed_fields(body)
        self._gone.setdefault(key, {})[name] = keep
        if not self._pods.get(key):
            self._pods.pop(key, None)
        return key

    def _put(self, table: dict[Key, dict[str, Mapping[str, Any]]],
             body: Mapping[str, Any]) -> Key | None:
        key = key_of_child(body)
        if key is None:
            return None
        name = Meta(body).name or ""
        bucket = table.setdefault(key, {})
        if not _is_older(body, bucket.get(name)):
            bucket[name] = without_managed_fields(body)
        return key

    def has_jobs(self, key: Key) -> bool:
        return bool(self._jobs.get(key))

    def children(self, key: Key) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        return list(self._jobs.get(key, {}).values()), list(self._pods.get(key, {}).values())

    def has_jobs(self, key: Key) -> bool:
        return bool(self._jobs.get(key))

    def observe(self, key: Key, *,
                children: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]
                | None = None,
                deployment_fresh: bool = False,
                job_error: str | None = None,
                job_events: Sequence[Mapping[str, Any]] | None = None,
                slot: Any = None, beyond_history: str | None = None,
                owned_runs: Sequence[Mapping[str, Any]] | None = None) -> obs.Observation:
        """The Observation of one FlowRun. `children` = freshly listed (jobs, pods);
        `deployment_fresh` = the Deployment entry was just read from the API; `job_events`
        = the current Job's Events, just listed; `owned_runs` = the runs it started, just
        listed (else those the Index holds)."""
        flowrun = self._flowruns[key]
        name = FlowRunView(flowrun).deployment_name
        jobs, pods = children if children is not None else self.children(key)
        return obs.Observation(
            flowrun=flowrun, deployment=self.deployment(key[0], name) if name else None,
            deployment_fresh=deployment_fresh, jobs=tuple(jobs), pods=tuple(pods),
            gone_pods=tuple(self._gone.get(key, {}).values()),
            fresh=children is not None, job_error=job_error, job_events=job_events,
            slot=slot, beyond_history=beyond_history,
            owned_runs=self._owned_runs(flowrun, owned_runs))

    def _owned_runs(self, flowrun: Mapping[str, Any],
                    listed: Sequence[Mapping[str, Any]] | None = None
                    ) -> tuple[Mapping[str, Any], ...]:
        if not owned.cancels_children(flowrun):
            return ()
        if listed is None:
            meta = Meta(flowrun)
            keys = self._by_owner.get((meta.namespace or "", meta.uid or ""), ())
            listed = [self._flowruns[key] for key in sorted(keys)]
        return tuple(body for body in listed if owned.owned_by(body, flowrun))

    def sizes(self) -> dict[str, int]:
        return {"flowruns": len(self._flowruns), "deployments": len(self._deployments),
                "jobs": sum(map(len, self._jobs.values())),
                "pods": sum(map(len, self._pods.values())),
                "gonePods": sum(map(len, self._gone.values()))}

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._flowruns))


def _discard(table: dict[tuple[str, str], set[Key]], group: tuple[str, str], key: Key) -> None:
    members = table.get(group)
    if members is not None:
        members.discard(key)
        if not members:
            del table[group]
