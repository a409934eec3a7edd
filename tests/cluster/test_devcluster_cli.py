"""`python -m flowpod_devcluster`: `up` (what `make cluster-up` runs) and `env` (what `make demo`
ends with) print exactly the `export` lines README's "Three ways to run it" tells users to type,
with absolute paths, and those lines work; the package runs without any PYTHONPATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flowpod_devcluster
from flowpod_devcluster import plane

README = plane.REPO_ROOT / "README.md"
BUILD_SCRIPT = Path(flowpod_devcluster.__file__).with_name("build-binaries.sh")


def _readme_exports() -> list[str]:
    """README's export lines, as the shell would see them typed in the repository root."""
    section = README.read_text().split("## Three ways to run it", 1)[1].split("\n### ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("export ")]
    assert len(lines) == 2, lines
    return [line.replace("$PWD", str(plane.REPO_ROOT)).replace("$HOME", str(Path.home()))
            for line in lines]


def _default_bin_dir() -> Path:
    version = re.search(r'K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"', BUILD_SCRIPT.read_text())
    assert version, "build-binaries.sh no longer sets a default K8S_VERSION"
    return Path.home() / ".cache" / "flowpod" / f"k8s-{version.group(1)}" / "bin"


def _no_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_exports_are_the_readme_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default plane of a checkout whose venv is .venv, as README assumes.
    monkeypatch.setattr(sys, "executable", str(plane.REPO_ROOT / ".venv" / "bin" / "python"))
    cluster = plane.Cluster(state_dir=plane.REPO_ROOT / ".cluster", api_port=6443,
                            etcd_port=2379, node_ip="127.0.0.1", bin_dir=_default_bin_dir())
    assert plane.shell_exports(cluster) == _readme_exports()


def test_exports_quote_unusual_paths() -> None:
    cluster = plane.Cluster(state_dir=Path("/tmp/a b"), api_port=1, etcd_port=2,
                            node_ip="127.0.0.1", bin_dir=Path("/opt/k8s bin"))
    kubeconfig, path = plane.shell_exports(cluster)
    assert kubeconfig == "export KUBECONFIG='/tmp/a b/kubeconfig'"
    assert path.startswith("export PATH='/opt/k8s bin':")


def _devcluster(cluster: plane.Cluster, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowpod_devcluster", *args, "--state-dir",
                           str(cluster.state_dir)], cwd=cwd, env=_no_pythonpath(),
                          capture_output=True, text=True, timeout=120)


def test_up_on_a_running_plane_ends_with_the_exports(cluster: plane.Cluster,
                                                     tmp_path: Path) -> None:
    result = _devcluster(cluster, tmp_path, "up")
    assert result.returncode == 0, result.stderr
    assert "control plane already running" in result.stdout
    assert result.stdout.splitlines()[-2:] == plane.shell_exports(cluster)


def test_env_lines_point_kubectl_and_flowpod_at_the_plane(cluster: plane.Cluster,
                                                          tmp_path: Path) -> None:
    result = _devcluster(cluster, tmp_path, "env")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == plane.shell_exports(cluster)
    shell = subprocess.run(
        ["bash", "-c", f"{result.stdout}\nkubectl get node {plane.NODE_NAME} -o name && "
                       "command -v helm flowpod"],
        cwd=tmp_path, env={**_no_pythonpath(), "KUBECONFIG": "/nonexistent"},
        capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [f"node/{plane.NODE_NAME}",
                                         str(cluster.bin_dir / "helm"),
                                         str(Path(sys.executable).parent / "flowpod")]
