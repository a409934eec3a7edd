"""Stopping a plane that never started: `down` on a state directory that does not exist
(a fresh clone, before its first `up`, which calls `down` first) stops nothing and creates
nothing (flowpod_devcluster.plane.down, processes.stop, realnode.stop)."""

from __future__ import annotations

from pathlib import Path

from flowpod_devcluster import plane, processes


def test_down_of_a_state_directory_that_does_not_exist_is_a_no_op(tmp_path: Path):
    state_dir = tmp_path / "never-started"
    plane.down(state_dir, progress=lambda line: None)
    processes.stop(state_dir, {"kubelet-containerd"})
    assert not state_dir.exists()
