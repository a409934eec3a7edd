"""An in-memory stand-in for the few Kubernetes API calls the `flowpod` CLI makes.

Role: the handler of an httpx.MockTransport for tests/delivery/test_cli.py. It stores
Deployments and FlowRuns per namespace, answers GET/POST/merge-PATCH/server-side-apply with
real Status objects on errors, streams scripted watch events and pod logs, and records every
request so tests can assert on what the CLI actually sent. Not a simulator of the operator:
tests script what the operator would have written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["FakeApi", "status_of", "run_object"]

_GROUP_PATH = re.compile(r"^/apis/flowpod\.io/v1alpha1(?:/namespaces/(?P<ns>[^/]+))?/"
                         r"(?P<plural>flowruns|deployments)(?:/(?P<name>[^/]+))?$")
_LOG_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")


def status_of(state_type: str, name: str, message: str = "", **fields: Any) -> dict[str, Any]:
    """A FlowRun status with one state (what the operator or engine would have written)."""
    return {"state": {"type": state_type, "name": name, "message": message,
                      "timestamp": "2030-01-01T00:00:05Z"}, **fields}


def run_object(ns: str, name: str, status: dict[str, Any] | None = None,
               **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "flowpod.io/v1alpha1", "kind": "FlowRun",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1",
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": spec or {"deploymentName": "hello"}}
    if status is not None:
        obj["status"] = status
    return obj


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _status(code: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": reason, "message": message, "code": code})


@dataclass
class FakeApi:
    """Objects by (plural, namespace, name); scripted watch updates and logs by name."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    watch_script: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    crds_installed: bool = True
    requests: list[httpx.Request] = field(default_factory=list)
    _rv: int = 1

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = "flowruns" if obj["kind"] == "FlowRun" else "deployments"
        meta = obj["metadata"]
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return obj

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def bodies(self, method: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.method == method and r.content]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if (m := _LOG_PATH.match(path)) is not None:
            lines = self.logs.get(m["pod"])
            if lines is None:
                return _status(404, "NotFound", f'pods "{m["pod"]}" not found')
            return httpx.Response(200, text="".join(f"{line}\n" for line in lines))
        m = _GROUP_PATH.match(path)
        if m is None or not self.crds_installed:
            return httpx.Response(404, text="404 page not found\n")
        if request.url.params.get("watch"):
            return self._watch(m["ns"], request.url.params["fieldSelector"].split("=", 1)[1])
        return self._crud(request, m["plural"], m["ns"], m["name"])

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _crud(self, request: httpx.Request, plural: str, ns: str | None,
              name: str | None) -> httpx.Response:
        key = (plural, ns or "", name or "")
        if request.method == "GET" and name is None:
            items = [o for (p, n, _), o in sorted(self.objects.items())
                     if p == plural and (ns is None or n == ns)]
            return httpx.Response(200, json={"kind": "List", "items": items})
        if request.method == "POST":
            body = json.loads(request.content)
            meta = body["metadata"]
            meta.setdefault("name", meta.pop("generateName", "run-") + "x1y2z")
            meta.update(namespace=ns, resourceVersion=self._next_rv(),
                        creationTimestamp="2030-01-01T00:00:00Z", generation=1)
            key = (plural, ns or "", meta["name"])
            if key in self.objects:
                return _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
            self.objects[key] = body
            return httpx.Response(201, json=body)
        if request.method == "PATCH" and request.headers["content-type"].startswith(
                "application/apply-patch"):
            body = json.loads(request.content)
            before = self.objects.get(key)
            generation = (before or {}).get("metadata", {}).get("generation", 0)
            if before is None or before["spec"] != body["spec"]:
                generation += 1
            body["metadata"].update(generation=generation, resourceVersion=self._next_rv())
            self.objects[key] = body
            return httpx.Response(201 if before is None else 200, json=body)
        if key not in self.objects:
            return _status(404, "NotFound", f'{plural}.flowpod.io "{name}" not found')
        if request.method == "GET":
            return httpx.Response(200, json=self.objects[key])
        if request.method == "PATCH":
            _merge(self.objects[key], json.loads(request.content))
            self.objects[key]["metadata"]["resourceVersion"] = self._next_rv()
            return httpx.Response(200, json=self.objects[key])
        return _status(405, "MethodNotAllowed", request.method)

    def _watch(self, ns: str, name: str) -> httpx.Response:
        if not self.watch_script.get(name):
            # Fail fast rather than let the CLI re-watch forever in a test that forgot a script.
            raise AssertionError(f"watch of FlowRun {name!r} with no scripted updates left")
        events = []
        for status in self.watch_script.pop(name, []):
            obj = json.loads(json.dumps(self.objects[("flowruns", ns, name)]))
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self.objects[("flowruns", ns, name)] = obj
            events.append(json.dumps({"type": "MODIFIED", "object": obj}) + "\n")
        return httpx.Response(200, text="".join(events))
