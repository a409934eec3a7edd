"""The real container node, `flowpod-containerd`, beside the process node: containerd 2.x with
runc and a real kubelet, all built from the pinned sources (build-node-binaries.sh), running
the images built from the repository's Dockerfiles (build-images.sh).

Started on demand by the `containerd_node` fixture (tests/containerd/conftest.py) into a
running plane;
its processes are recorded with the plane's, so `python -m flowpod_devcluster down` stops them.

Two rules of this machine shape it:
- Host state stays untouched. containerd, its shims and the kubelet share one private mount
  namespace (`unshare -m`): their overlay, tmpfs and bind mounts vanish with them, and the
  kernel tunables the kubelet insists on are shadowed there by files holding the values it
  wants, instead of being rewritten machine-wide.
- Traffic stays on loopback. Pods the node runs use the host network (the API server listens
  on 127.0.0.1 only); a MutatingAdmissionPolicy that the node installs does this for exactly
  the pods that ask for this node (nodeSelector `flowpod.io/node: containerd`), so the chart
  and the operator's pod manifests stay what users get. It also points the in-pod clients at
  127.0.0.1:<api port> rather than the kubernetes Service's ClusterIP, which nothing routes
  here. Any other pod gets a network namespace holding only `lo` (the only CNI plugin
  configured), and every registry host is mapped to a closed loopback port, so a pull can
  never leave the machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from flowpod_devcluster import processes
from flowpod_devcluster import realnode_config as config
from flowpod_devcluster.realnode_config import NODE_LABEL, NODE_NAME
from flowpod_devcluster.plane import Cluster

__all__ = ["NODE_NAME", "NODE_LABEL", "PLACEMENT", "RealNode", "up", "stop"]

PLACEMENT = {
    "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
    "tolerations": [{"key": NODE_LABEL[0], "operator": "Equal", "value": NODE_LABEL[1],
                     "effect": "NoSchedule"}],
}
_HERE = Path(__file__).parent
_READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class RealNode:
    """A running containerd node: where its state lives and how to reach containerd."""

    dir: Path
    bin_dir: Path

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the pinned ctr against this node's containerd, in the Kubernetes namespace."""
        argv = [str(self.bin_dir / "ctr"), "--address", str(self.socket), "-n", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def _layers(self, container_id: str) -> tuple[Path, list[Path]]:
        mounts = self.ctr("snapshots", "mounts", "/unused", container_id).stdout
        options = dict(opt.split("=", 1) for opt in mounts.replace(" ", ",").split(",")
                       if opt.startswith(("upperdir=", "lowerdir=")))
        return Path(options["upperdir"]), [Path(p) for p in options["lowerdir"].split(":")]

    def written_files(self, container_id: str) -> list[str]:
        """Every path a container wrote outside its volumes: the contents of its writable
        overlay layer (kept by containerd until the pod is deleted)."""
        upper, _ = self._layers(container_id)
        return sorted("/" + str(p.relative_to(upper)) for p in upper.rglob("*"))

    def mount_points(self, container_id: str) -> set[str]:
        """The directories runc had to create to mount the container's mounts onto: each
        destination and its parents, through the image's symlinks (/var/run -> /run)."""
        _, lowers = self._layers(container_id)
        spec = json.loads(self.ctr("containers", "info", container_id).stdout)["Spec"]
        found: set[str] = set()
        for mount in spec["mounts"]:
            path = _resolve(Path(mount["destination"]), lowers)
            found.update(str(p) for p in (path, *path.parents))
        return found


def _resolve(path: Path, lowers: list[Path]) -> Path:
    """``path`` with the image's absolute symlinks among its parents followed (top layer wins)."""
    resolved = Path("/")
    for part in path.parts[1:]:
        candidate = resolved / part
        link = next((layer / candidate.relative_to("/") for layer in lowers
                     if (layer / candidate.relative_to("/")).is_symlink()
                     or (layer / candidate.relative_to("/")).exists()), None)
        if link is not None and link.is_symlink():
            target = Path(os.readlink(link))
            candidate = target if target.is_absolute() else resolved / target
        resolved = candidate
    return resolved


def _script(name: str) -> Path:
    return _HERE / name


def _run_script(name: str) -> Path:
    out = subprocess.run(["bash", str(_script(name))], check=True, stdout=subprocess.PIPE,
                         text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def binaries_dir() -> Path:
    """Build (cold) or find (warm) kubelet, containerd, runc and the CNI loopback plugin."""
    return _run_script("build-node-binaries.sh")


def image_archives() -> Path:
    """Build (cold) or find (warm) the engine, operator and pause images; their archives."""
    return _run_script("build-images.sh")


def _wait(what: str, predicate, log: str, timeout: float = _READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-40:])
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s; the end of {log}:\n{tail}")


def _import_images(node: RealNode, archives: Path) -> None:
    # Re-import only archives that changed since the last import into this containerd.
    for archive in sorted(archives.glob("*.tar")):
        stamp = node.dir / f"imported-{archive.stem}"
        fingerprint = f"{archive.stat().st_size}-{archive.stat().st_mtime_ns}"
        if stamp.exists() and stamp.read_text() == fingerprint:
            continue
        node.ctr("images", "import", str(archive))
        stamp.write_text(fingerprint)


def _node_ready(c: Cluster, since: str = "") -> bool:
    """Ready, and (given ``since``, an API timestamp) reported so by a kubelet alive since
    then: a node object outlives its kubelet and stays Ready for a while."""
    out = c.kubectl("get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=="
                    "'Ready')].status} {.status.conditions[?(@.type=='Ready')]"
                    ".lastHeartbeatTime}", check=False)
    status, _, heartbeat = out.stdout.strip().partition(" ")
    return status == "True" and heartbeat >= since


def _running(c: Cluster, name: str) -> bool:
    return any(r.name == name and processes.is_alive(r)
               for r in processes.read_records(c.state_dir))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up(c: Cluster, *, progress=print) -> RealNode:
    """Start the containerd node into the running plane ``c`` (or return the live one)."""
    node = RealNode(dir=c.state_dir / "containerd-node", bin_dir=binaries_dir())
    if _running(c, "kubelet-containerd") and _node_ready(c):
        return node
    _preflight()
    stop(c.state_dir)  # a containerd left without its kubelet would hold the socket
    archives = image_archives()
    node.dir.mkdir(parents=True, exist_ok=True)
    (node.dir / "bin-dir").write_text(str(node.bin_dir))
    config.write_configs(node, c, pause=_pause_ref(archives), kubelet_port=_free_port())
    env = {**os.environ, "PATH": f"{node.bin_dir}:{os.environ['PATH']}"}
    progress(f"starting containerd for {NODE_NAME}")
    containerd = processes.spawn(
        c.state_dir, "containerd", [*config.namespace_wrapper(node),
                                    str(node.bin_dir / "containerd"),
                                    "--config", str(node.dir / "containerd.toml")], env=env)
    _wait("containerd", lambda: _ctr_ok(node), containerd.log)
    _import_images(node, archives)
    c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                     "items": config.admission_policy(c)}))
    progress(f"starting kubelet for {NODE_NAME}")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # The kubelet joins containerd's mount namespace, so both see the same mounts.
    kubelet = processes.spawn(c.state_dir, "kubelet-containerd", [
        "nsenter", f"--mount=/proc/{containerd.pid}/ns/mnt", "--",
        str(node.bin_dir / "kubelet"), f"--config={node.dir / 'kubelet-config.json'}",
        f"--kubeconfig={node.dir / 'kubelet.kubeconfig'}", f"--root-dir={node.dir / 'kubelet'}",
        f"--hostname-override={NODE_NAME}", "--node-ip=127.0.0.1",
        f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}", "--v=1"], env=env)
    _wait(f"node {NODE_NAME}", lambda: _node_ready(c, since=started), kubelet.log)
    # The kubelet refuses to report a loopback address ("nodeIP can't be loopback") and then
    # leaves status.addresses alone; the API server reaches it for `kubectl logs` through this.
    c.kubectl("patch", "node", NODE_NAME, "--subresource=status", "--type=merge", "-p",
              json.dumps({"status": {"addresses": [
                  {"type": "InternalIP", "address": "127.0.0.1"},
                  {"type": "Hostname", "address": NODE_NAME}]}}))
    return node


def _preflight() -> None:
    """Fail at once, naming the missing piece, on a machine that cannot run this node."""
    missing = []
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("the overlay filesystem (containerd's overlayfs snapshotter)")
    if not any((Path("/sys/fs/cgroup") / sub).is_dir() for sub in ("memory", "cgroup.controllers")):
        missing.append("a memory cgroup (/sys/fs/cgroup/memory or cgroup v2)")
    actions = Path("/proc/sys/kernel/seccomp/actions_avail")
    if not actions.exists() or "errno" not in actions.read_text():
        missing.append("seccomp filters (RuntimeDefault profiles)")
    if os.geteuid() != 0:
        missing.append("root (containerd, runc and the kubelet's mounts and cgroups)")
    if missing:
        raise RuntimeError(f"the containerd node {NODE_NAME} cannot run on this machine; "
                           f"it lacks: {'; '.join(missing)}")


def _pause_ref(archives: Path) -> str:
    return (archives / "pause.ref").read_text().strip()


def _ctr_ok(node: RealNode) -> bool:
    try:
        node.ctr("version", timeout=10)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def stop(state_dir: Path, *, grace: float = 10.0) -> None:
    """Stop the node: the kubelet, then containerd (so no new shim can start), then what
    containerd started, which has left its process tree and would keep running: container
    processes, then their shims. Those are found as the processes running this node's shim
    binary for this node's containerd socket, and the containers as their children."""
    processes.stop(state_dir, {"kubelet-containerd"}, grace=grace)
    processes.stop(state_dir, {"containerd"}, grace=grace)
    node_dir = state_dir / "containerd-node"
    shims = _shims(node_dir)
    inits = [pid for pid in _all_pids() if _parent(pid) in shims]
    # containerd is gone, so nothing is left to stop them gracefully for: the containers
    # first (a shim exits when its last container does), then any shim still there.
    for group in (inits, shims):
        for pid in group:
            _kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while any(not _zombie(pid) for pid in group) and time.monotonic() < deadline:
            time.sleep(0.05)
    deadline = time.monotonic() + grace
    while (left := [p for p in _shims(node_dir) if not _zombie(p)]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"containerd shims {left} of {node_dir} survived SIGKILL")
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _shims(node_dir: Path) -> list[int]:
    marker = node_dir / "bin-dir"
    if not marker.exists():
        return []
    shim = Path(marker.read_text().strip()) / "containerd-shim-runc-v2"
    socket = str(node_dir / "containerd.sock")
    found = []
    for pid in _all_pids():
        if _exe(pid) != shim:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if socket.encode() in argv:
            found.append(pid)
    return found


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _exe(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
