"""build-binaries.sh run twice at once, as a demo and a test run do: the second run waits on
the cache's lock and then finds the binaries warm, so every binary is built exactly once.

Hermetic except the last test: a scratch cache (FLOWPOD_CACHE) and a stub `go` on PATH that
takes a while to "build" each binary and logs every call.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import flowpod_devcluster
from flowpod_devcluster import plane

SCRIPT = Path(flowpod_devcluster.__file__).with_name("build-binaries.sh")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
            "helm", "promtool")
K8S_VERSION = "v1.36.3"

# Stands in for `go build ... -o OUT PKG`: logs which binary it was asked for, takes a while
# (so two runs overlap), then writes OUT the way the script expects (an executable .tmp).
_STUB_GO = """#!/bin/bash
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; shift; fi
  shift
done
name="${out##*/}"; echo "${name%.tmp}" >> "$GO_CALLS"
[ -n "$GO_FAIL" ] && { echo "go must not run against a warm cache" >&2; exit 99; }
sleep "$GO_SLEEP"
printf '#!/bin/sh\\n' > "$out"
chmod +x "$out"
"""


def _environment(tmp_path: Path, **extra: str) -> tuple[dict[str, str], Path, Path]:
    stub_dir = tmp_path / "stub-bin"
    stub_dir.mkdir()
    (stub_dir / "go").write_text(_STUB_GO)
    (stub_dir / "go").chmod(0o755)
    calls = tmp_path / "go-calls"
    env = {**os.environ, "FLOWPOD_CACHE": str(tmp_path / "cache"), "K8S_VERSION": K8S_VERSION,
           "GO_CALLS": str(calls),
           "GO_SLEEP": "0.3", "GO_FAIL": "", "PATH": f"{stub_dir}:{os.environ['PATH']}",
           **extra}
    return env, tmp_path / "cache" / f"k8s-{K8S_VERSION}" / "bin", calls


def _run_twice_at_once(env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def _calls(path: Path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


def test_two_cold_builds_at_once_build_each_binary_once(tmp_path: Path) -> None:
    env, bin_dir, calls = _environment(tmp_path)
    runs = _run_twice_at_once(env)
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == str(bin_dir)
    # Without the lock both runs build everything (and race on the same *.tmp files).
    assert _calls(calls) == sorted(BINARIES)
    waited = [run for run in runs if "another build" in run.stderr]
    assert len(waited) == 1, [run.stderr for run in runs]
    assert "built in" not in waited[0].stderr  # it found the other run's binaries warm
    for name in BINARIES:
        assert os.access(bin_dir / name, os.X_OK)
        assert not (bin_dir / f"{name}.tmp").exists()


def test_two_runs_at_once_against_a_warm_cache_build_nothing(tmp_path: Path) -> None:
    env, bin_dir, calls = _environment(tmp_path, GO_FAIL="1")
    bin_dir.mkdir(parents=True)
    for name in BINARIES:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    for run in _run_twice_at_once(env):
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == str(bin_dir)
        assert run.stderr == ""
    assert _calls(calls) == []


def test_a_partial_cache_builds_only_what_is_missing(tmp_path: Path) -> None:
    env, bin_dir, calls = _environment(tmp_path)
    bin_dir.mkdir(parents=True)
    for name in BINARIES[:-1]:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    for run in _run_twice_at_once(env):
        assert run.returncode == 0, run.stderr
    assert _calls(calls) == [BINARIES[-1]]


def test_the_real_warm_cache_serves_two_runs_at_once(cluster: plane.Cluster) -> None:
    # The plane's own binaries (built before the session started it): both runs return at once.
    for run in _run_twice_at_once(dict(os.environ)):
        assert run.returncode == 0, run.stderr
        assert Path(run.stdout.strip()) == cluster.bin_dir
