"""Polling helpers for tests against the real plane: wait for a condition with a timeout and
report the last thing seen when it never came, plus small kubectl JSON helpers.

Used by tests/cluster/test_*.py and meant for any suite that has the `cluster` fixture. Tests
poll instead of sleeping, so they are as fast as the cluster and fail with a clear message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from flowpod_devcluster import plane

__all__ = ["apply", "container_status", "waiting_reason", "get", "wait_for", "wait_for_pod"]

T = TypeVar("T")


def wait_for(what: str, fetch: Callable[[], T], done: Callable[[T], bool], *,
             timeout: float = 30.0, interval: float = 0.2) -> T:
    """Call ``fetch`` until ``done(value)``; return that value, or fail naming ``what`` and
    showing the last value fetched."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            shown = json.dumps(value, indent=1, default=str)[-4000:] \
                if isinstance(value, (dict, list)) else repr(value)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last seen:\n{shown}")
        time.sleep(interval)


def get(cluster: plane.Cluster, kind: str, name: str, namespace: str | None = None) -> dict | None:
    """The object as JSON, or None when it does not exist."""
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    result = cluster.kubectl(*args, check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return json.loads(result.stdout)


def apply(cluster: plane.Cluster, namespace: str, *manifests: dict) -> None:
    """Create the given objects in ``namespace``."""
    for manifest in manifests:
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def container_status(pod: dict | None, name: str | None = None) -> dict:
    """The containerStatuses entry for ``name`` (default: the first), or {} if not yet there."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if name is None or status["name"] == name:
            return status
    return {}


def waiting_reason(pod: dict | None, name: str | None = None) -> str | None:
    """Why container ``name`` (default: the first) is waiting, or None if it is not."""
    return ((container_status(pod, name).get("state") or {}).get("waiting") or {}).get("reason")


def wait_for_pod(cluster: plane.Cluster, namespace: str, name: str,
                 done: Callable[[dict], bool], *, what: str, timeout: float = 30.0) -> dict:
    """Poll pod ``name`` until ``done(pod)`` holds (a missing pod never satisfies it)."""
    found = wait_for(f"pod {namespace}/{name}: {what}",
                     lambda: get(cluster, "pod", name, namespace),
                     lambda pod: pod is not None and done(pod), timeout=timeout)
    assert found is not None
    return found
