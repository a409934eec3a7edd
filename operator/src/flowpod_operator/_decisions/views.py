"""Typed, read-only views over Kubernetes objects as the API server returns them.

Role: name the fields the operator reads (a FlowRun's key, resourceVersion, deployment name,
state type; any object's labels, annotations, owner, timestamps) once, so no module spells
`(obj.get("metadata") or {}).get(...)` chains. Callers: the runtime layer (intake, loop,
actuator, index, Events) and the decision layer.

The objects themselves stay plain dicts on purpose: they are what the watch delivers and
what the tests write, and parsing them into models costs more than deciding. Measured on
this machine: `crds.resources.FlowRun.model_validate` of a running FlowRun takes ~23 us,
a whole `decide()` of that run ~48 us, and a view's property read ~0.1 us; a Job and a Pod
would need models too. A view wraps the dict without copying it, and never fails on a
missing field: it answers None (or an empty mapping), as the API may omit any of them.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["Meta", "FlowRunView", "Key"]

Key = tuple[str, str]  # (namespace, FlowRun name)
_EMPTY: Mapping[str, Any] = {}


def _section(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = obj.get(name)
    # A dict first: what the API gives is always one, and the abstract Mapping check costs
    # ten times as much (it is on every view read of every decision).
    return value if type(value) is dict or isinstance(value, Mapping) else _EMPTY


class Meta:
    """`metadata` of any object."""

    __slots__ = ("_meta",)

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._meta = _section(obj, "metadata")

    @property
    def name(self) -> str | None:
        return self._meta.get("name")

    @property
    def namespace(self) -> str | None:
        return self._meta.get("namespace")

    @property
    def uid(self) -> str | None:
        return self._meta.get("uid")

    @property
    def resource_version(self) -> str | None:
        return self._meta.get("resourceVersion")

    @property
    def generation(self) -> int:
        return int(self._meta.get("generation") or 1)

    @property
    def labels(self) -> Mapping[str, str]:
        return _section(self._meta, "labels")

    @property
    def annotations(self) -> Mapping[str, str]:
        return _section(self._meta, "annotations")

    @property
    def owner_references(self) -> list[Mapping[str, Any]]:
        return list(self._meta.get("ownerReferences") or ())

    @property
    def deletion_timestamp(self) -> str | None:
        return self._meta.get("deletionTimestamp")

    def is_older_than(self, other: Mapping[str, Any] | None) -> bool:
        """True when this is an earlier version of the same object than `other`.

        A watch event can arrive after the response of the operator's own, later write;
        keeping the newer body avoids deciding on a view already known to be stale.
        Resource versions are compared only when both are plain integers (what etcd gives).
        """
        if other is None:
            return False
        theirs = Meta(other)
        if self.uid != theirs.uid:
            return False
        mine, newer = str(self.resource_version or ""), str(theirs.resource_version or "")
        return mine.isdigit() and newer.isdigit() and int(mine) < int(newer)


class FlowRunView:
    """A FlowRun body: its key, the spec fields and status fields the runtime reads."""

    __slots__ = ("body", "meta")

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.meta = Meta(body)

    @property
    def key(self) -> Key:
        return self.meta.namespace or "", self.meta.name or ""

    @property
    def spec(self) -> Mapping[str, Any]:
        return _section(self.body, "spec")

    @property
    def status(self) -> Mapping[str, Any] | None:
        """The status as stored (None before anything wrote one)."""
        return self.body.get("status")

    @property
    def deployment_name(self) -> str | None:
        return self.spec.get("deploymentName")

    @property
    def state_type(self) -> str | None:
        """The wire state type (e.g. "RUNNING"), None before the first state."""
        return _section(_section(self.body, "status"), "state").get("type")

    @property
    def attempt(self) -> int:
        return int(_section(self.body, "status").get("attempt") or 0)
