"""One fake Kubernetes API server for every hermetic test, in memory and in process.

Role: stands in for the API server in the tests of the in-pod engine's client (httpx:
`transport()`), the operator's reconcile loop and the CLI (kubernetes-asyncio over aiohttp:
`serve()`, a loopback HTTP server on 127.0.0.1). Objects are stored by (plural, namespace,
name); it answers GET (one or a list, with label and field selectors), POST (generateName,
AlreadyExists), PATCH as merge patch (RFC 7386, with resourceVersion preconditions: 409),
JSON patch (RFC 6902) and server-side apply, DELETE, pod logs and scripted watches, with
real Status objects on errors. FlowRun status writes are checked against the state
machine and the frozen final status the CRD's CEL rules enforce (422). Every request is recorded, so a test asserts on
what a client really sent; `failures` and `before_patch` let a test inject answers and
concurrent writers. Not a simulator of the operator: tests script what it would write.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import httpx
import json_merge_patch
import jsonpatch

from flowpod import contract, states
from flowpod_operator.crds import _cel

__all__ = ["FakeApi", "status_of", "run_object", "status_response"]

Key = tuple[str, str, str]  # (plural, namespace, name)
PLURALS = {"FlowRun": "flowruns", "Deployment": "deployments", "Job": "jobs", "Pod": "pods",
           "Event": "events"}
_GROUPS = {"flowruns": contract.GROUP, "deployments": contract.GROUP, "jobs": "batch",
           "pods": "", "events": ""}
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                   r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$")
_DISCOVERY = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/?$")


def status_response(code: int, reason: str, message: str) -> httpx.Response:
    """An error answer as the API server gives it: a v1 Status."""
    return httpx.Response(code, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": reason, "message": message, "code": code})


def _hook_record_may_change(old: Any, new: Any) -> bool:
    """The hook record's clause of that rule (_cel.hook_record_rule)."""
    if old is None:
        return True
    if new is None:
        return False
    if old.get("outcome") in contract.HOOKS_DONE:
        return new == old
    return all(key not in old or new.get(key) == old[key] for key in ("declared", "runner"))


def _refuse_frozen(old: dict[str, Any], new: dict[str, Any]) -> httpx.Response | None:
    """The CRD's CEL rule on a final run's status: frozen, but for how its pod ended."""
    state = old.get("state") or {}
    if state.get("type") not in {t.value for t in states.TERMINAL_TYPES}:
        return None
    for key in set(old) | set(new):
        if (key in old) == (key in new) and old.get(key) == new.get(key):
            continue
        if key in _cel.FINAL_STATUS_RECORDABLE and (
                key not in old or (key == "reason" and key in new
                                   and new[key] == _cel.RECORDED_REASON_OVERRIDE)):
            continue  # how the pod ended, recorded once (see the rule)
        if key == _cel.HOOK_RECORD and _hook_record_may_change(old.get(key), new.get(key)):
            continue
        break
    else:
        return None
    return status_response(422, "Invalid", f"status: Forbidden: status is frozen once the run "
                                           f"is final ({state['type']})")


def status_of(state_type: str, name: str, message: str = "", **fields: Any) -> dict[str, Any]:
    """A FlowRun status with one state (what the operator or engine would have written)."""
    return {"state": {"type": state_type, "name": name, "message": message,
                      "timestamp": "2030-01-01T00:00:05Z"}, **fields}


def run_object(ns: str, name: str, status: dict[str, Any] | None = None,
               **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": contract.API_VERSION, "kind": "FlowRun",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1",
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": spec or {"deploymentName": "hello"}}
    if status is not None:
        obj["status"] = status
    return obj


def _matches(obj: dict[str, Any], label_selector: str | None,
             field_selector: str | None) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, eq, value = term.partition("=")
        if (labels.get(key) != value) if eq else (key not in labels):
            return False
    for term in filter(None, (field_selector or "").split(",")):
        field, _, value = term.partition("=")
        found: Any = obj
        for part in field.split("."):  # e.g. metadata.name, involvedObject.kind
            found = found.get(part) if isinstance(found, dict) else None
        if found != value:
            return False
    return True


class FakeApi:
    """The objects, the requests seen, and the hooks a test sets."""

    def __init__(self, *, created_at: str = "2030-01-01T00:00:00Z") -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.applied: list[dict[str, Any]] = []  # bodies of the PATCHes that were applied
        # Each request pops the first failure; an answer other than None is returned as is.
        self.failures: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.before_patch: Callable[[FakeApi], None] | None = None  # a concurrent writer
        self.watch_script: dict[str, list[dict[str, Any]]] = {}  # FlowRun name -> statuses
        self.logs: dict[str, list[str]] = {}  # pod name -> lines
        self.crds_installed = True
        self.created_at = created_at
        self.lock = threading.RLock()
        self._rv = 1

    # --- the store, for tests -----------------------------------------------------------
    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.objects[(PLURALS[obj["kind"]], meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, ns, name))

    def items(self, plural: str, ns: str | None = None) -> list[dict[str, Any]]:
        return [o for (p, n, _), o in self.objects.items() if p == plural and ns in (None, n)]

    def remove(self, plural: str, ns: str, name: str) -> None:
        self.objects.pop((plural, ns, name), None)

    def update(self, plural: str, ns: str, name: str, **fields: Any) -> dict[str, Any]:
        """Replace top-level fields (e.g. status=...) as another writer would: new rv."""
        obj = self.objects[(plural, ns, name)]
        obj.update(copy.deepcopy(fields))
        self._bump(obj)
        return obj

    def bodies(self, method: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.method == method and r.content]

    # --- the two ways in ----------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        """For httpx clients (the in-pod engine)."""
        return httpx.MockTransport(self.handler)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """For any HTTP client (kubernetes-asyncio): a loopback server; yields its URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        # A short poll keeps shutdown() quick (it waits for the serving loop to notice).
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fakeapi",
                                  daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    # --- answering ----------------------------------------------------------------------
    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if self.failures:
                answer = self.failures.pop(0)(request)
                if answer is not None:
                    return answer
            return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        found = _DISCOVERY.match(path)
        if found is not None and found["group"] == contract.GROUP:
            return self._discovery()
        match = _PATH.match(path)
        if match is None:
            return status_response(404, "NotFound", f"no route for {path}")
        group, plural = match["group"] or "", match["plural"]
        if group == contract.GROUP and not self.crds_installed:
            return httpx.Response(404, text="404 page not found\n")
        if match["sub"] == "log":
            return self._log(match["name"])
        ns, name = match["ns"] or "", match["name"]
        if name is None:
            return self._collection(request, plural, match["ns"])
        return self._item(request, (plural, ns, name), match["sub"] == "status")

    def _discovery(self) -> httpx.Response:
        if not self.crds_installed:
            return httpx.Response(404, text="404 page not found\n")
        return httpx.Response(200, json={"kind": "APIResourceList", "resources": [
            {"name": contract.FLOWRUNS}, {"name": contract.DEPLOYMENTS}]})

    def _log(self, pod: str) -> httpx.Response:
        lines = self.logs.get(pod)
        if lines is None:
            return status_response(404, "NotFound", f'pods "{pod}" not found')
        return httpx.Response(200, text="".join(f"{line}\n" for line in lines))

    def _collection(self, request: httpx.Request, plural: str,
                    ns: str | None) -> httpx.Response:
        params = request.url.params
        if request.method == "GET" and params.get("watch") in ("1", "true", "True"):
            return self._watch(ns or "", params.get("fieldSelector", "").partition("=")[2])
        if request.method == "GET":
            items = [o for (p, n, _), o in self.objects.items() if p == plural
                     and (ns is None or n == ns)
                     and _matches(o, params.get("labelSelector"), params.get("fieldSelector"))]
            return httpx.Response(200, json={"kind": "List", "apiVersion": "v1",
                                             "metadata": {"resourceVersion": str(self._rv)},
                                             "items": items})
        if request.method == "POST":
            return self._create(plural, ns or "", json.loads(request.content))
        return status_response(405, "MethodNotAllowed", request.method)

    def _create(self, plural: str, ns: str, body: dict[str, Any]) -> httpx.Response:
        meta = body.setdefault("metadata", {})
        if "name" not in meta:
            meta["name"] = meta.pop("generateName", "run-") + "x1y2z"
        key = (plural, ns, meta["name"])
        if key in self.objects:
            return status_response(409, "AlreadyExists",
                                   f'{plural} "{meta["name"]}" already exists')
        meta.update(namespace=ns, uid=f"uid-{meta['name']}", generation=1,
                    creationTimestamp=meta.get("creationTimestamp") or self.created_at)
        self._bump(body)
        self.objects[key] = body
        return httpx.Response(201, json=body)

    def _item(self, request: httpx.Request, key: Key, status: bool) -> httpx.Response:
        if request.method == "PATCH" and request.headers.get("content-type", "").startswith(
                "application/apply-patch"):
            return self._apply(key, json.loads(request.content))
        obj = self.objects.get(key)
        if obj is None:
            return status_response(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        if request.method == "GET":
            return httpx.Response(200, json=obj)
        if request.method == "DELETE":
            del self.objects[key]
            return httpx.Response(200, json=obj)
        if request.method == "PATCH":
            return self._patch(request, key, status)
        return status_response(405, "MethodNotAllowed", request.method)

    def _apply(self, key: Key, body: dict[str, Any]) -> httpx.Response:
        """Server-side apply, as far as the CLI needs it: create, or replace the spec."""
        before = self.objects.get(key)
        generation = (before or {}).get("metadata", {}).get("generation", 0)
        if before is None or before.get("spec") != body.get("spec"):
            generation += 1
        body["metadata"].update(namespace=key[1], generation=generation,
                                creationTimestamp=self.created_at)
        self._bump(body)
        self.objects[key] = body
        return httpx.Response(201 if before is None else 200, json=body)

    def _patch(self, request: httpx.Request, key: Key, status: bool) -> httpx.Response:
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook(self)
        obj = self.objects[key]
        body = json.loads(request.content)
        if request.headers.get("content-type") == "application/json-patch+json":
            new = jsonpatch.apply_patch(obj, body)
            # A patch that sets metadata.resourceVersion makes it a precondition (409).
            if new["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                return status_response(409, "Conflict", "the object has been modified; "
                                       "please apply your changes to the latest version")
        else:
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                return status_response(409, "Conflict", "the object has been modified; "
                                       "please apply your changes to the latest version")
            # The status subresource takes only .status (and the precondition) from a patch.
            patch = {k: v for k, v in body.items() if k == "status"} if status else body
            new = json_merge_patch.merge(copy.deepcopy(obj), copy.deepcopy(patch))
        refused = self._refuse_transition(key, obj, new)
        if refused is not None:
            return refused
        if new.get("spec") != obj.get("spec"):  # as the API server: a spec change is new
            new["metadata"]["generation"] = int(obj["metadata"].get("generation") or 1) + 1
        self._bump(new)
        self.objects[key] = new
        self.applied.append(body)
        return httpx.Response(200, json=new)

    @staticmethod
    def _refuse_transition(key: Key, old: dict[str, Any],
                           new: dict[str, Any]) -> httpx.Response | None:
        """The CRD's CEL rule on status.state: no leaving a final state, one table."""
        if key[0] != "flowruns":
            return None
        before = (old.get("status") or {}).get("state")
        after = (new.get("status") or {}).get("state")
        if not before or not after or before == after or states.is_transition_allowed(
                states.StateType(before["type"]), states.StateType(after["type"])):
            return _refuse_frozen(old.get("status") or {}, new.get("status") or {})
        if before["type"] == after["type"]:  # a new message on a final state
            return _refuse_frozen(old.get("status") or {}, new.get("status") or {})
        return status_response(422, "Invalid", f"status.state.type cannot change from "
                                               f"{before['type']} to {after['type']}")

    def _watch(self, ns: str, name: str) -> httpx.Response:
        script = self.watch_script.pop(name, None)
        if not script:
            # Fail fast rather than let a client re-watch forever in a test without a script.
            return status_response(500, "InternalError",
                                   f"watch of FlowRun {name!r} with no scripted updates left")
        events = []
        for status in script:
            obj = copy.deepcopy(self.objects[("flowruns", ns, name)])
            obj["status"] = status
            self._bump(obj)
            self.objects[("flowruns", ns, name)] = obj
            events.append(json.dumps({"type": "MODIFIED", "object": obj}) + "\n")
        return httpx.Response(200, text="".join(events))

    def _bump(self, obj: dict[str, Any]) -> None:
        current = str(obj.get("metadata", {}).get("resourceVersion") or "0")
        self._rv = max(self._rv, int(current) if current.isdigit() else 0) + 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)


def _handler_class(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as kubernetes-asyncio's pool expects

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = httpx.Request(self.command, f"http://fakeapi{self.path}",
                                    headers=dict(self.headers.items()),
                                    content=self.rfile.read(length) if length else b"")
            try:
                response = api.handler(request)
            except Exception as exc:  # a failing hook: answer, so the client sees it
                response = status_response(500, "InternalError", repr(exc))
            body = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return  # tests read `api.requests`, not an access log

    return Handler
