"""The operator on the real local plane, for integration tests and benchmarks.

Role: apply the CRDs, set up a namespace for flow-run pods (the ServiceAccount + Role the
Helm chart also carries), talk to the API server directly (httpx with the admin
certificate: polling through kubectl would cost a process per look), and run the
operator as a real subprocess (`python -m flowpod_operator`) with its log captured.
Callers: tests/operator/conftest.py (fixtures), tests/bench/operator_*.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import httpx
import yaml

from flowpod import contract
from flowpod_devcluster import plane
from flowpod_operator._runtime import kubeapi as _acting

__all__ = ["REPO", "CRDS", "FLOW_RUN_ACCOUNT", "IMAGE", "LABEL_ATTEMPT", "FINAL",
           "FLOW_RUN_RBAC", "apply_crds", "prepare_namespace", "operator_kubeconfig", "Api",
           "OperatorProcess", "state_type", "free_port"]

REPO = plane.REPO_ROOT
CRDS = REPO / "crds"
IMAGE = "flowpod/engine:dev"
FLOW_RUN_ACCOUNT = contract.DEFAULT_SERVICE_ACCOUNT
# What users apply on the kubectl path (the chart grants the same); tests apply the very file.
FLOW_RUN_RBAC = REPO / "examples" / "flow-run-rbac.yaml"
LABEL_ATTEMPT = contract.LABEL_ATTEMPT
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def apply_crds(cluster: plane.Cluster, timeout: float = 60) -> None:
    """Apply crds/ and wait until both kinds are Established and can really be listed.

    The wait reads the CRDs' conditions itself: `kubectl wait --for=condition=Established`
    errors out (rather than waiting) on a CRD so new that it has no conditions yet. And right
    after a CRD is Established its storage may still answer 429 "storage is (re)initializing".
    """
    cluster.kubectl("apply", "-f", str(CRDS))
    api = Api(cluster)
    try:
        deadline = time.monotonic() + timeout
        for plural in (contract.FLOWRUNS, contract.DEPLOYMENTS):
            crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{contract.GROUP}"
            path = contract.resource_path(plural)
            while not (_established(api.request("GET", crd))
                       and api.request("GET", path, limit=1).status_code == 200):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{plural} could not be listed within {timeout}s")
                time.sleep(0.1)
    finally:
        api.close()


def _established(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    conditions = (response.json().get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def prepare_namespace(cluster: plane.Cluster, namespace: str) -> None:
    """Create `namespace` (if needed) with the flow-run ServiceAccount and its RBAC."""
    if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", str(FLOW_RUN_RBAC))


def operator_kubeconfig(cluster: plane.Cluster, namespace: str, path: Path,
                        account: str = "flowpod-operator") -> Path:
    """A kubeconfig for a ServiceAccount holding exactly the operator's RBAC
    (flowpod_operator._runtime.kubeapi.RBAC_RULES, and LEADER_ELECTION_RULES: the Lease lives
    in the same namespace) in `namespace`, written to `path`. Running the operator with it
    proves the documented permissions are enough."""
    rules = [dict(r) for r in (*_acting.RBAC_RULES, *_acting.LEADER_ELECTION_RULES)]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": account}, "rules": rules}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": account},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": account},
               "subjects": [{"kind": "ServiceAccount", "name": account,
                             "namespace": namespace}]}
    account_obj = {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": account}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all([account_obj, role, binding]))
    token = cluster.kubectl("create", "token", account, "-n", namespace,
                            "--duration=2h").stdout.strip()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "plane", "cluster": {
            "server": cluster.api_url, "certificate-authority": str(cluster.pki["ca.crt"])}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "plane", "user": account,
                                                      "namespace": namespace}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def state_type(flowrun: Mapping[str, Any] | None) -> str | None:
    return (((flowrun or {}).get("status") or {}).get("state") or {}).get("type")


class Api:
    """A small synchronous API client with the plane's admin credentials."""

    def __init__(self, cluster: plane.Cluster) -> None:
        pki = cluster.pki
        context = ssl.create_default_context(cafile=pki["ca.crt"])
        context.load_cert_chain(pki["admin.crt"], pki["admin.key"])
        self.http = httpx.Client(base_url=cluster.api_url, verify=context, timeout=30)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json", **params: Any) -> httpx.Response:
        return self.http.request(method, path, params=params or None,
                                 content=None if body is None else json.dumps(body),
                                 headers={"Content-Type": content_type})

    def get(self, path: str, **params: Any) -> dict[str, Any] | None:
        response = self.request("GET", path, **params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.request("POST", path, body)
        if response.status_code >= 300:
            raise AssertionError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    # --- flowpod objects -------------------------------------------------------------------
    def create_deployment(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        spec.setdefault("image", IMAGE)
        return self.create(contract.deployment_path(namespace), {"apiVersion": contract.API_VERSION, "kind": "Deployment",
                                  "metadata": {"name": name}, "spec": spec})

    def create_flowrun(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        return self.create(contract.flowrun_path(namespace), {
            "apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": {"name": name}, "spec": spec})

    def flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(contract.flowrun_path(namespace, name))

    def cancel(self, namespace: str, name: str) -> None:
        response = self.request("PATCH", contract.flowrun_path(namespace, name),
                                {"spec": {"cancel": True}}, contract.MERGE_PATCH)
        response.raise_for_status()

    def jobs(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        return self.get(f"/apis/batch/v1/namespaces/{namespace}/jobs", **params)["items"]

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        return self.get(f"/api/v1/namespaces/{namespace}/pods", **params)["items"]

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items = self.get(f"/api/v1/namespaces/{namespace}/events",
                         fieldSelector=f"involvedObject.name={name}")["items"]
        # Ours carry a microsecond eventTime; Kubernetes' older recorders firstTimestamp.
        return sorted(items, key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")

    def wait_flowrun(self, namespace: str, name: str, ready: Callable[[dict], bool], *,
                     what: str, timeout: float = 60, explain: Callable[[], str] = str
                     ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        flowrun: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            flowrun = self.flowrun(namespace, name)
            if flowrun is not None and ready(flowrun):
                return flowrun
            time.sleep(0.1)
        raise AssertionError(f"FlowRun {namespace}/{name}: {what} not seen in {timeout}s; "
                             f"last status: {json.dumps((flowrun or {}).get('status'))}\n"
                             f"{explain()}")

    def wait_final(self, namespace: str, name: str, timeout: float = 60,
                   explain: Callable[[], str] = str) -> dict[str, Any]:
        return self.wait_flowrun(namespace, name, lambda f: state_type(f) in FINAL,
                                 what="a final state", timeout=timeout, explain=explain)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`python -m flowpod_operator` as a child process, logging to `log_path`."""

    def __init__(self, kubeconfig: Path, log_path: Path, namespaces: tuple[str, ...] = (),
                 extra_args: tuple[str, ...] = (),
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = namespaces
        self.extra_args = extra_args
        # e.g. PYTHONPATH naming another checkout's sources, for a benchmark comparing them
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0

    def start(self, timeout: float = 30) -> "OperatorProcess":
        self.health_port = free_port()
        argv = [sys.executable, "-m", "flowpod_operator", "--kubeconfig", str(self.kubeconfig),
                "--health-host", "127.0.0.1", "--health-port", str(self.health_port),
                *[arg for ns in self.namespaces for arg in ("--namespace", ns)],
                *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO,
                                         env={**os.environ, **self.extra_env},
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the operator exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise AssertionError(f"the operator was not healthy within {timeout}s:\n"
                             f"{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz",
                             timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies under it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace: float = 10) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40, needle: str | None = None) -> str:
        entries = self.log_text().splitlines()
        if needle:
            entries = [line for line in entries if needle in line]
        return "\n".join(entries[-lines:])
