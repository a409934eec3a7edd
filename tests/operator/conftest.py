"""Fixtures of the operator tests.

- `k8s`: builders of plain-dict Kubernetes objects (FlowRun, Deployment, Job, Pod) as the API
  server returns them, for the pure decision-function tests (test_deciding*.py). They are
  built through the operator's own Job builder where that matters, so a test's Job looks
  like the one the operator would have made.
- `flow_namespace`, `operator_proc`, `api` (module scope; the logic is in
  tests/operator_harness.py, shared with the benchmarks): the CRDs applied, a namespace
  with the flow-run ServiceAccount and RBAC, the operator as a real subprocess watching
  that namespace (its log in .cluster/logs/), and a direct API client.
- `lease_priority`: the chart's FlowSchema for the operator's Lease requests, for tests that
  run operators with --leader-election.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

import operator_harness as harness
from delivery import _helm
from flowpod import contract
from flowpod_operator._decisions import manifests as _manifests
from flowpod_operator._decisions import observations as obs

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(offset: float = 0.0) -> str:
    """An API timestamp `offset` seconds from NOW (whole seconds, as metav1.Time)."""
    return contract.format_time(NOW + timedelta(seconds=offset), fraction=False)


def wire_state(kind: str, name: str | None = None, message: str = "",
               offset: float = -1.0) -> dict[str, str]:
    return {"type": kind, "name": name or kind.title(), "message": message,
            "timestamp": contract.format_time(NOW + timedelta(seconds=offset))}


class Objects:
    """Builders; every argument has a sensible default so a test states only what matters."""

    now = NOW
    ts = staticmethod(ts)
    state = staticmethod(wire_state)

    @staticmethod
    def flowrun(name: str = "run", ns: str = "ns", *, deployment: str | None = "hello",
                state: dict[str, str] | None = None, attempt: int | None = None,
                cancel: bool = False, scheduled: float | None = None,
                parameters: dict[str, Any] | None = None, entrypoint: str | None = None,
                image: str | None = None, history: list[dict[str, str]] | None = None,
                **status: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"cancel": cancel}
        if deployment:
            spec["deploymentName"] = deployment
        else:
            spec["entrypoint"] = entrypoint or "flows/x.py:hello"
            spec["image"] = image or "flowpod/engine:dev"
        if parameters is not None:
            spec["parameters"] = parameters
        if scheduled is not None:
            spec["scheduledTime"] = ts(scheduled)
        full: dict[str, Any] = dict(status)
        if state is not None:
            full["state"] = state
            full["stateHistory"] = history if history is not None else [state]
        if attempt is not None:
            full["attempt"] = attempt
            full.setdefault("jobName", _manifests.job_name(name, attempt))
        body: dict[str, Any] = {
            "apiVersion": contract.API_VERSION, "kind": "FlowRun",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "resourceVersion": "100", "generation": 1,
                         "creationTimestamp": ts(-60)},
            "spec": spec,
        }
        if deployment:  # as the CLI creates it, and the operator labels every other
            body["metadata"]["labels"] = {contract.LABEL_DEPLOYMENT: deployment}
        if full:
            body["status"] = full
        return body

    @staticmethod
    def deployment(name: str = "hello", ns: str = "ns", *, retries: int = 0,
                   pending: int = 300, grace: int = 30, timeout: int | None = None,
                   schema: dict[str, Any] | None = None,
                   parameters: dict[str, Any] | None = None,
                   template: dict[str, Any] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"entrypoint": "flows/hello.py:hello",
                                "image": "flowpod/engine:dev", "retries": retries,
                                "pendingTimeoutSeconds": pending,
                                "cancellationGracePeriodSeconds": grace}
        if timeout is not None:
            spec["timeoutSeconds"] = timeout
        if schema is not None:
            spec["parameterSchema"] = schema
        if parameters is not None:
            spec["parameters"] = parameters
        if template is not None:
            spec["podTemplate"] = template
        return {"apiVersion": contract.API_VERSION, "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "uid": f"uid-d-{name}"},
                "spec": spec}

    @staticmethod
    def job(run: dict[str, Any] | None = None, attempt: int = 1, *, created: float = -5,
            retries: int = 0, pending: int = 300, grace: int = 30,
            timeout: int | None = None, conditions: list[dict[str, Any]] | None = None,
            **status: Any) -> dict[str, Any]:
        run = run or Objects.flowrun()
        settings = obs.RunSettings(retries, pending, grace, timeout)
        job = _manifests.build_job(run, Objects.deployment(), attempt, settings=settings)
        job["metadata"].update(uid=f"uid-job-{attempt}", resourceVersion="50",
                               creationTimestamp=ts(created))
        job["status"] = dict(status)
        if conditions:
            job["status"]["conditions"] = [{"status": "True", **c} for c in conditions]
        return job

    @staticmethod
    def pod(run: dict[str, Any] | None = None, attempt: int = 1, *, name: str | None = None,
            created: float = -5, phase: str = "Running", running: bool = True,
            waiting: str | None = None, waiting_message: str = "",
            exit_code: int | None = None, term_reason: str | None = None,
            term_message: str = "", deleting: float | None = None,
            conditions: list[dict[str, Any]] | None = None, reason: str | None = None,
            message: str | None = None, memory: str | None = None) -> dict[str, Any]:
        run = run or Objects.flowrun()
        job = Objects.job(run, attempt)
        template = job["spec"]["template"]
        spec = json.loads(json.dumps(template["spec"]))
        spec["nodeName"] = "flowpod-node"
        if memory:
            spec["containers"][0]["resources"] = {"limits": {"memory": memory}}
        state: dict[str, Any]
        if exit_code is not None:
            phase = "Succeeded" if exit_code == 0 else "Failed"
            state = {"terminated": {"exitCode": exit_code,
                                    "reason": term_reason or ("Completed" if exit_code == 0
                                                              else "Error"),
                                    "message": term_message}}
        elif waiting is not None or not running:
            phase = "Pending"
            state = {"waiting": {"reason": waiting or "ContainerCreating",
                                 "message": waiting_message}}
        else:
            state = {"running": {"startedAt": ts(created + 1)}}
        status: dict[str, Any] = {"phase": phase,
                                  "containerStatuses": [{"name": contract.CONTAINER_NAME,
                                                         "state": state}],
                                  "conditions": conditions or []}
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        meta = {"name": name or f"{job['metadata']['name']}-abcde",
                "namespace": run["metadata"]["namespace"],
                "uid": f"uid-pod-{attempt}-{name}", "resourceVersion": "60",
                "creationTimestamp": ts(created),
                "labels": template["metadata"]["labels"],
                "annotations": template["metadata"]["annotations"]}
        if deleting is not None:
            meta["deletionTimestamp"] = ts(deleting)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                "status": status}


@pytest.fixture
def k8s() -> type[Objects]:
    return Objects


@pytest.fixture(scope="module")
def flow_namespace(cluster, request: pytest.FixtureRequest) -> str:
    """A namespace for one test module, ready for flow-run pods; deleted afterwards."""
    stem = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "").replace("_", "-")
    name = f"{stem[:40]}-{uuid.uuid4().hex[:5]}"
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def api(cluster) -> harness.Api:
    client = harness.Api(cluster)
    yield client
    client.close()


@pytest.fixture(scope="module")
def operator_kubeconfig(cluster, flow_namespace: str) -> Path:
    """Credentials holding only the operator's documented RBAC, in `flow_namespace`."""
    path = cluster.state_dir / "logs" / f"operator-{flow_namespace}.kubeconfig"
    yield harness.operator_kubeconfig(cluster, flow_namespace, path)
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def operator_proc(request, cluster, flow_namespace: str, operator_kubeconfig: Path
                  ) -> harness.OperatorProcess:
    """The operator, watching only `flow_namespace` with least privilege (plus the test
    module's OPERATOR_ARGS, if any); it must stop cleanly at the end, with no error in its
    log."""
    log = cluster.state_dir / "logs" / f"operator-{flow_namespace}.log"
    args = tuple(getattr(request.module, "OPERATOR_ARGS", ()))
    proc = harness.OperatorProcess(operator_kubeconfig, log, (flow_namespace,), args).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"operator exit code {code}\n{proc.log_tail()}"
    assert '"level": "ERROR"' not in proc.log_text(), proc.log_tail(needle="ERROR")


@pytest.fixture
def operators(cluster, flow_namespace, operator_kubeconfig):
    """Start operators on demand (with exactly the chart's RBAC), for tests that stop, kill
    or restart them; all are stopped (or already dead) at the end."""
    started: list[harness.OperatorProcess] = []

    def start() -> harness.OperatorProcess:
        log = cluster.state_dir / "logs" / f"operator-{flow_namespace}-{len(started)}.log"
        proc = harness.OperatorProcess(operator_kubeconfig, log, (flow_namespace,)).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def lease_priority(cluster, flow_namespace):
    """The chart's FlowSchema, for this namespace's operator account (harness.operator_kubeconfig
    makes `flowpod-operator`): Lease requests at APF's leader-election level, as installed."""
    (schema,) = _helm.template("fullnameOverride=flowpod",
                               namespace=flow_namespace).of_kind("FlowSchema")
    schema["metadata"]["name"] = f"flowpod-leader-election-{flow_namespace}"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(schema))
    yield
    cluster.kubectl("delete", "flowschema", schema["metadata"]["name"], check=False)
