"""Hermetic checks of flowpod_devcluster/realnode.py's pure parts: following an image's
symlinks to a mount point, and the configuration that keeps the node on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from flowpod_devcluster import realnode, realnode_config


def test_mount_points_follow_the_images_symlinks_top_layer_first(tmp_path: Path) -> None:
    top, base = tmp_path / "top", tmp_path / "base"
    (base / "var").mkdir(parents=True)
    (base / "var" / "run").symlink_to("/run")
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "alt").symlink_to("/opt/alt")
    (base / "etc").mkdir()
    resolve = realnode._resolve
    assert resolve(Path("/var/run/secrets/x"), [top, base]) == Path("/run/secrets/x")
    assert resolve(Path("/etc/alt/y"), [top, base]) == Path("/opt/alt/y")
    assert resolve(Path("/data/z"), [top, base]) == Path("/data/z")


def test_the_node_pulls_only_from_loopback_and_gives_pods_only_lo(tmp_path: Path) -> None:
    node = realnode.RealNode(dir=tmp_path / "node", bin_dir=tmp_path / "bin")
    (node.dir).mkdir()
    realnode_config.write_network_configs(node)
    hosts = (node.dir / "certs.d" / "_default" / "hosts.toml").read_text()
    assert 'server = "http://127.0.0.1:9"' in hosts
    conflist = json.loads((node.dir / "cni" / "10-loopback.conflist").read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["loopback"]
