"""Running the pinned helm binary against charts/flowpod, for the delivery tests.

Role: one place that finds helm (built and cached by flowpod_devcluster's build script, the same
cache as the control plane), renders the chart into parsed objects, and runs helm commands with
a clear failure message. Callers: tests/delivery/test_helm_chart.py and test_helm_install.py.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from flowpod_devcluster import plane

__all__ = ["CHART", "KUBE_VERSION", "Rendered", "built_in_kube_version", "helm_path", "run",
           "template"]

CHART = plane.REPO_ROOT / "charts" / "flowpod"
# The plane's version. Passed to `helm template` so renders match the plane exactly; helm's own
# offline default is only major.minor (set by build-binaries.sh's ldflags, see
# built_in_kube_version), and a helm built without them would assume 1.20.
KUBE_VERSION = "1.36.3"


@functools.cache
def helm_path() -> Path:
    """The cached helm (a warm cache returns at once; a cold one builds everything)."""
    return plane.binaries_dir() / "helm"


def run(*args: str, check: bool = True, kubeconfig: Path | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [str(helm_path()), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
    return result


def built_in_kube_version() -> str:
    """The Kubernetes version helm assumes offline (`.Capabilities.KubeVersion`), e.g. v1.36.0."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "probe"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
        (chart / "templates" / "probe.yaml").write_text(
            "kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n")
        return yaml.safe_load(run("template", "probe", str(chart)).stdout)["kubeVersion"]


@dataclass(frozen=True)
class Rendered:
    """`helm template` output: every object, and which template file produced it."""

    objects: list[dict]
    sources: list[str]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str, namespace: str | None = None) -> dict:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name
                 and (namespace is None or o["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind}/{name} in {namespace}, got {len(found)}"
        return found[0]


def template(*set_args: str, namespace: str = "flowpod-system",
             release: str = "rel") -> Rendered:
    """Render the chart with `--set` style overrides given as "key=value" strings."""
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", KUBE_VERSION]
    for item in set_args:
        args += ["--set", item]
    out = run(*args).stdout
    objects, sources = [], []
    for chunk in out.split("\n---\n"):
        source = next((line.split(":", 1)[1].strip() for line in chunk.splitlines()
                       if line.startswith("# Source:")), None)
        doc = yaml.safe_load(chunk)
        if doc:
            objects.append(doc)
            sources.append(source or "")
    return Rendered(objects=objects, sources=sources)
