"""Hermetic tests of the test node's parts (no control plane): quantities, the image map,
`$(VAR)` expansion, the phase rule, CRI log files, the process wrapper and the watch's
re-list after 410 Gone."""

from __future__ import annotations

import datetime
import json
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from flowpod_devcluster.node import (containerlogs, environment, images, kubeapi, launching,
                                     quantities, statuses, syncing, volumes)

_T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(("text", "value"), [("64Mi", 64 * 2**20), ("500m", Decimal("0.5")),
                                             ("1e3", 1000), ("1.5Gi", 3 * 2**29), ("2k", 2000),
                                             ("128974848", 128974848)])
def test_quantities_parse(text: str, value: Decimal) -> None:
    assert quantities.parse(text) == value


def test_bad_quantity_names_the_field() -> None:
    with pytest.raises(ValueError, match="limits.memory: '64MB' is not a Kubernetes quantity"):
        quantities.to_bytes("64MB", field="limits.memory")


def test_default_image_map() -> None:
    image_map = images.load(None, workdir=Path("/repo"))
    python = image_map.resolve("docker.io/library/python:3.11-slim")
    assert python is not None and python.args == ("python3",) and python.command == ()
    assert python.venv == Path(sys.executable).parent.parent
    engine = image_map.resolve("flowpod/engine:dev")
    assert engine is not None and engine.command == ("python", "-m", "flowpod.engine")
    assert engine.working_dir == "/repo"
    assert image_map.resolve("busybox:1.36") is None


def test_image_map_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"includeDefaults": True, "images": [
        {"match": "tools/*", "venv": "venvs/tools", "command": ["tool"]}]}))
    image_map = images.load(path, workdir=tmp_path)
    tool = image_map.resolve("tools/lint:1")
    assert tool is not None and tool.venv == tmp_path / "venvs" / "tools"
    assert image_map.resolve("python:3.12") is not None
    path.write_text(json.dumps({"images": [{"match": "x", "entrypoint": ["y"]}]}))
    with pytest.raises(ValueError, match=r"images\[0\]: unknown keys \['entrypoint'\]"):
        images.load(path, workdir=tmp_path)


def test_expand() -> None:
    env = {"A": "1", "B": "two"}
    assert environment.expand("$(A)-$(B)-$$(A)-$(C)-$", env) == "1-two-$(A)-$(C)-$"


def _container(state: str, exit_code: int = 0) -> statuses.ContainerRuntime:
    c = statuses.ContainerRuntime("c", "python:3.11")
    if state == "running":
        c.set_running("flowpod://x", _T0)
    elif state == "terminated":
        c.set_terminated(statuses.Terminated(exit_code, "Error" if exit_code else "Completed",
                                             _T0, _T0, "flowpod://x"))
    return c


@pytest.mark.parametrize(("states", "policy", "phase"), [
    ([("waiting", 0), ("running", 0)], "Never", "Pending"),
    ([("running", 0), ("terminated", 0)], "Never", "Running"),
    ([("terminated", 0), ("terminated", 0)], "Never", "Succeeded"),
    ([("terminated", 0), ("terminated", 3)], "Never", "Failed"),
    ([("terminated", 3)], "OnFailure", "Running"),
    ([("terminated", 0)], "OnFailure", "Succeeded"),
    ([("terminated", 0)], "Always", "Running"),
])
def test_phase_rule(states: list[tuple[str, int]], policy: str, phase: str) -> None:
    rt = statuses.PodRuntime(init_containers=[], containers=[_container(*s) for s in states],
                             initialized=True)
    assert statuses.phase(rt, policy) == phase


def test_signal_exit_status() -> None:
    t = statuses.Terminated(137, "OOMKilled", _T0, _T0, "flowpod://x", signal=9)
    assert t.to_api() == {"exitCode": 137, "signal": 9, "reason": "OOMKilled",
                          "startedAt": "2026-01-02T03:04:05Z", "finishedAt":
                          "2026-01-02T03:04:05Z", "containerID": "flowpod://x"}


def test_log_file_round_trip(tmp_path: Path) -> None:
    writer = containerlogs.LogWriter(tmp_path / "c" / "0.log", lambda: _T0)
    writer.write("stdout", b"whole line", partial=False)
    writer.write("stderr", b"no newline", partial=True)
    writer.close()
    entries, offset = containerlogs.read_entries(tmp_path / "c" / "0.log")
    assert offset == (tmp_path / "c" / "0.log").stat().st_size
    assert [(e.stream, e.content, e.partial) for e in entries] == [
        ("stdout", b"whole line", False), ("stderr", b"no newline", True)]
    assert containerlogs.render(entries[0], timestamps=True) == \
        b"2026-01-02T03:04:05.123456000Z whole line\n"
    assert containerlogs.render(entries[1], timestamps=False) == b"no newline"


def test_wrapper_uses_a_mount_namespace_only_for_mounts(tmp_path: Path) -> None:
    plain = launching.LaunchSpec(argv=["true"], env={}, working_dir="/")
    assert launching.wrapper_argv(plain)[0] == "/bin/bash"
    mounted = launching.LaunchSpec(argv=["true"], env={}, working_dir="/", mounts=[
        volumes.Mount(source=tmp_path, target="/var/run/x", read_only=True)])
    argv = launching.wrapper_argv(mounted)
    assert argv[1:5] == ["--mount", "--propagation", "private", "--"]
    assert argv[5:8] == ["/bin/bash", "--posix", "-c"]
    assert "mount -o remount,bind,ro /var/run/x" in argv[8]


def test_process_keeps_env_and_reports_signals(tmp_path: Path) -> None:
    code = ("import os, signal; print(os.environ['odd.name'], flush=True); "
            "os.kill(os.getpid(), signal.SIGUSR1)")
    spec = launching.LaunchSpec(argv=[sys.executable, "-c", code],
                                env={"odd.name": "kept", "PATH": "/usr/bin:/bin"},
                                working_dir=str(tmp_path / "wd"))
    writer = containerlogs.LogWriter(tmp_path / "0.log", lambda: _T0)
    started: list[launching.ProcessHandle] = []
    code_seen = anyio.run(launching.run, spec, writer, started.append)
    writer.close()
    assert code_seen == -10 and len(started) == 1
    entries, _ = containerlogs.read_entries(tmp_path / "0.log")
    assert [e.content for e in entries] == [b"kept"]


class _ExpiringApi:
    """Lists twice; the first watch delivers one event and then expires with 410 Gone."""

    def __init__(self) -> None:
        self.lists: list[str] = []
        self.watched: list[str] = []

    async def get(self, path: str, **params: str) -> dict:
        if path != "/api/v1/pods":
            raise kubeapi.ApiError(404, "NotFound", path)
        version = str(10 * (len(self.lists) + 1))
        self.lists.append(params["fieldSelector"])
        return {"metadata": {"resourceVersion": version}, "items": []}

    async def watch(self, path: str, **params: str):
        self.watched.append(params["resourceVersion"])
        if len(self.watched) == 1:
            yield {"type": "ADDED", "object": {"metadata": {"uid": "u1", "resourceVersion": "11",
                                                            "name": "p", "namespace": "n"}}}
            raise kubeapi.ApiError(410, "Expired", "too old resource version")
        await anyio.sleep_forever()
        yield {}


def test_watch_expiry_relists() -> None:
    api = _ExpiringApi()
    seen: list[str] = []
    gone: list[str] = []
    known = [{"metadata": {"uid": "u0", "name": "old", "namespace": "n"}}]
    sync = syncing.PodSync(api, "node-a", on_pod=lambda p: seen.append(p["metadata"]["uid"]),
                           on_deleted=lambda p: gone.append(p["metadata"]["uid"]),
                           known=lambda: known)

    async def main() -> None:
        with anyio.move_on_after(0.3):
            await sync.run()
    anyio.run(main)
    assert api.lists == ["spec.nodeName=node-a"] * 2
    assert api.watched == ["10", "20"]
    assert seen == ["u1"]
    assert gone == ["u0", "u0"]  # known but absent from both lists, and a GET says 404
