"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler from the pinned, locally built release, plus the process-backed test node.

Called by `python -m flowpod_devcluster up|down|status|env` (the Makefile's cluster-up /
cluster-down, the demo, the benchmarks) and by the session fixture in tests/conftest.py.
State lives in one directory (default .cluster/): pki/, kubeconfig, logs/, pids.json and
cluster.json (ports, node address).
"""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flowpod_devcluster import pki, processes

__all__ = ["Cluster", "up", "down", "load", "binaries_dir", "shell_exports", "REPO_ROOT",
           "NODE_NAME"]

# The package is installed editable from the checkout it serves (tests/devcluster/
# flowpod_devcluster/): the plane applies that checkout's files and its node runs pods from it.
REPO_ROOT = Path(__file__).resolve().parents[3]
NODE_NAME = "flowpod-node"
_BUILD_SCRIPT = Path(__file__).with_name("build-binaries.sh")
_READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Cluster:
    """A running plane: where it keeps its state and how to reach it."""

    state_dir: Path
    api_port: int
    etcd_port: int
    node_ip: str
    bin_dir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.state_dir / "pki")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this plane and capture its output."""
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(argv, capture_output=True, text=True, input=input,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def is_ready(self) -> bool:
        return _readyz(self) == "ok"


def shell_exports(cluster: Cluster) -> list[str]:
    """The two lines README's "Three ways to run it" has users type, with absolute paths: the
    plane's kubeconfig, then the pinned kubectl and helm and this venv's `flowpod` on PATH."""
    venv_bin = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    return [f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}",
            f"export PATH={shlex.quote(str(cluster.bin_dir))}:{shlex.quote(str(venv_bin))}:$PATH"
            "   # kubectl, helm, flowpod"]


def binaries_dir() -> Path:
    """Build (cold) or find (warm) the pinned binaries; returns their directory."""
    out = subprocess.run(["bash", str(_BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE,
                         text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readyz(cluster: Cluster) -> str:
    ctx = ssl.create_default_context(cafile=cluster.pki["ca.crt"])
    ctx.load_cert_chain(cluster.pki["admin.crt"], cluster.pki["admin.key"])
    conn = http.client.HTTPSConnection("127.0.0.1", cluster.api_port, context=ctx, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().read().decode()
    except OSError:
        return ""
    finally:
        conn.close()


def load(state_dir: Path) -> Cluster | None:
    """The plane recorded in ``state_dir``, if every one of its processes is still alive."""
    meta = state_dir / "cluster.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    cluster = Cluster(state_dir=state_dir, api_port=data["api_port"],
                      etcd_port=data["etcd_port"], node_ip=data["node_ip"],
                      bin_dir=Path(data["bin_dir"]))
    records = processes.read_records(state_dir)
    if not records or not all(processes.is_alive(r) for r in records):
        return None
    return cluster


def _etcd_argv(c: Cluster) -> list[str]:
    data = c.state_dir / "etcd-data"
    peer = _free_port()
    return [str(c.bin_dir / "etcd"), "--name", "flowpod-test", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{c.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{c.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"flowpod-test=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{_free_port()}",
            # A test plane need not survive power loss; skipping fsync makes writes ~10x cheaper.
            "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3), "--log-level", "warn"]


def _apiserver_argv(c: Cluster) -> list[str]:
    p = c.pki
    return [str(c.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={c.api_port}",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={p['apiserver.crt']}", f"--tls-private-key-file={p['apiserver.key']}",
            f"--client-ca-file={p['ca.crt']}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            # The default reconciler refuses a loopback address for the kubernetes Service.
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p['sa.pub']}",
            f"--service-account-signing-key-file={p['sa.key']}",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--kubelet-client-certificate={p['apiserver-kubelet-client.crt']}",
            f"--kubelet-client-key={p['apiserver-kubelet-client.key']}",
            f"--kubelet-certificate-authority={p['ca.crt']}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={p['front-proxy-ca.crt']}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p['front-proxy-client.crt']}",
            f"--proxy-client-key-file={p['front-proxy-client.key']}",
            "--allow-privileged=true", "--profiling=false", "--v=1"]


def _component_argv(c: Cluster, name: str, kubeconfig: Path) -> list[str]:
    common = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
              f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
              f"--secure-port={_free_port()}", "--leader-elect=false", "--profiling=false"]
    if name == "kube-scheduler":
        return [str(c.bin_dir / name), *common]
    p = c.pki
    return [str(c.bin_dir / name), *common, "--controllers=*",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={p['sa.key']}", f"--root-ca-file={p['ca.crt']}",
            f"--cluster-signing-cert-file={p['ca.crt']}",
            f"--cluster-signing-key-file={p['ca.key']}",
            # Ten parallel syncs per controller is plenty for one node and keeps CPU for tests.
            "--concurrent-job-syncs=10",
            # The default 20 requests/s throttles the garbage collector after a burst of
            # 1,000 Jobs for ~100 s, which delays every later test's pods.
            "--kube-api-qps=200", "--kube-api-burst=400"]


def _wait(what: str, predicate, timeout: float = _READY_TIMEOUT, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = ""
    if log and Path(log).exists():
        tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s\n{tail}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_node(c: Cluster) -> processes.ProcessRecord:
    # The working directory is what the node's image map gives flowpod images (the checkout),
    # and the node's interpreter is the venv those images run in (node/images.py).
    argv = [sys.executable, "-m", "flowpod_devcluster.node", "--state-dir", str(c.state_dir),
            "--node-name", NODE_NAME, "--node-ip", c.node_ip]
    return processes.spawn(c.state_dir, "node", argv, cwd=REPO_ROOT)


def _write_credentials(c: Cluster) -> None:
    """The PKI, and one kubeconfig per component (the admin one is `kubeconfig`)."""
    certs = pki.make_pki(c.state_dir / "pki", node_name=NODE_NAME, node_ip=c.node_ip)
    for stem, user in [("admin", "flowpod-admin"), ("controller-manager",
                       "system:kube-controller-manager"), ("scheduler", "system:kube-scheduler"),
                       ("node", f"system:node:{NODE_NAME}")]:
        name = "kubeconfig" if stem == "admin" else f"{stem}.kubeconfig"
        pki.write_kubeconfig(c.state_dir / name, certs, server=c.api_url, user=user, stem=stem)


def up(state_dir: Path, *, progress=print) -> Cluster:
    """Start a fresh plane and test node in ``state_dir`` (or return the live one there)."""
    state_dir = state_dir.resolve()
    live = load(state_dir)
    if live is not None and live.is_ready():
        progress(f"control plane already running at {live.api_url}")
        return live
    down(state_dir)
    started = time.monotonic()
    progress("building or finding the pinned binaries…")
    bin_dir = binaries_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    # The node reports 127.0.0.1. The API server refuses loopback only for the node *proxy*
    # subresource; containerLogs (what `kubectl logs` uses) dials it, so no netns is needed.
    node_ip = "127.0.0.1"
    c = Cluster(state_dir=state_dir, api_port=_free_port(), etcd_port=_free_port(),
                node_ip=node_ip, bin_dir=bin_dir)
    _write_credentials(c)
    (state_dir / "cluster.json").write_text(json.dumps(
        {"api_port": c.api_port, "etcd_port": c.etcd_port, "node_ip": c.node_ip,
         "bin_dir": str(bin_dir)}, indent=2))
    progress(f"starting etcd on 127.0.0.1:{c.etcd_port}")
    etcd = processes.spawn(state_dir, "etcd", _etcd_argv(c))
    _wait("etcd", lambda: _port_open(c.etcd_port), log=etcd.log)
    progress(f"starting kube-apiserver on {c.api_url}")
    api = processes.spawn(state_dir, "kube-apiserver", _apiserver_argv(c))
    _wait("kube-apiserver /readyz", c.is_ready, log=api.log)
    for name, stem in [("kube-controller-manager", "controller-manager"),
                       ("kube-scheduler", "scheduler")]:
        progress(f"starting {name}")
        processes.spawn(state_dir, name, _component_argv(c, name,
                                                         state_dir / f"{stem}.kubeconfig"))
    progress(f"starting the test node {NODE_NAME} ({node_ip})")
    node = _start_node(c)
    _wait(f"node {NODE_NAME}", lambda: _node_ready(c), log=node.log)
    progress(f"control plane ready in {time.monotonic() - started:.1f}s; "
             f"kubeconfig: {c.kubeconfig}")
    return c


def _node_ready(c: Cluster) -> bool:
    out = c.kubectl("get", "node", NODE_NAME, "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
    return out.stdout.strip() == "True"


def down(state_dir: Path, *, progress=print) -> None:
    """Stop exactly the processes this state directory recorded, then remove its etcd data."""
    state_dir = state_dir.resolve()
    # The containerd node's containers and shims are no recorded processes: stop them first.
    from flowpod_devcluster import realnode  # realnode imports this module
    realnode.stop(state_dir)
    stopped = processes.stop_all(state_dir)
    if stopped:
        progress(f"stopped {', '.join(stopped)}")
    for leftover in ("etcd-data", "cluster.json"):
        path = state_dir / leftover
        if path.is_dir():
            subprocess.run(["rm", "-rf", str(path)], check=False)
        elif path.exists():
            path.unlink()
