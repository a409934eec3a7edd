"""A fake Kubernetes API server for one FlowRun, behind httpx.MockTransport.

Role: shared by the hermetic tests of the in-pod reporter and main
(tests/engine/test_kubereporter.py, tests/engine/test_in_pod.py). It honours
resourceVersion preconditions (409), applies merge patches as RFC 7386 says, and refuses
state transitions the way the CRD's CEL rule does (422), so tests can fail for real.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import httpx

from flowpod import contract, states

__all__ = ["FakeApi", "Sleeps", "NS", "NAME", "PATH"]

NS, NAME = "team", "run-1"
PATH = contract.flowrun_path(NS, NAME)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class FakeApi:
    """One FlowRun; honours resourceVersion preconditions and the CEL transition rule."""

    def __init__(self, status: dict | None = None, spec: dict | None = None) -> None:
        self.obj: dict[str, Any] = {
            "metadata": {"name": NAME, "namespace": NS, "generation": 1, "resourceVersion": "1"},
            "spec": spec or {"entrypoint": "f.py:f", "image": "flowpod/engine:dev"},
        }
        if status is not None:
            self.obj["status"] = status
        self.requests: list[httpx.Request] = []
        self.failures: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.before_patch: Callable[["FakeApi"], None] | None = None

    def bump(self) -> None:
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)

    def write_status(self, **fields: Any) -> None:
        """A concurrent writer (the operator) changing the status."""
        self.obj["status"] = _merge(self.obj.get("status") or {}, fields)
        self.bump()

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            answer = self.failures.pop(0)(request)
            if answer is not None:
                return answer
        if request.url.path == PATH and request.method == "GET":
            return httpx.Response(200, json=self.obj)
        assert request.url.path == f"{PATH}/status" and request.method == "PATCH"
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook(self)
        body = json.loads(request.content)
        if request.headers["content-type"] == contract.JSON_PATCH:
            for op in body:
                assert op["op"] == "add" and op["path"] == "/status/result"
                self.obj.setdefault("status", {})["result"] = op["value"]
            self.bump()
            return httpx.Response(200, json=self.obj)
        assert request.headers["content-type"] == contract.MERGE_PATCH
        wanted = body.get("metadata", {}).get("resourceVersion")
        if wanted is not None and wanted != self.obj["metadata"]["resourceVersion"]:
            return httpx.Response(409, json={"message": "the object has been modified"})
        old = (self.obj.get("status") or {}).get("state")
        new_status = _merge(self.obj.get("status") or {}, body["status"])
        new = new_status.get("state")
        if old and new != old and not states.is_transition_allowed(
                states.StateType(old["type"]), states.StateType(new["type"])):
            return httpx.Response(422, json={"message": f"status.state.type cannot change "
                                                        f"from {old['type']} to {new['type']}"})
        self.obj["status"] = new_status
        self.bump()
        return httpx.Response(200, json=self.obj)

    def patches(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "PATCH"]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
