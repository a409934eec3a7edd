"""`python -m cluster up|down|status [--state-dir DIR]`: the Makefile's cluster-up/cluster-down.

Run with PYTHONPATH=tests from the repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster import plane


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=plane.REPO_ROOT / ".cluster",
                        help="where the plane keeps its PKI, kubeconfig, logs and PIDs")
    args = parser.parse_args(argv)
    if args.action == "up":
        plane.up(args.state_dir)
    elif args.action == "down":
        plane.down(args.state_dir)
    else:
        live = plane.load(args.state_dir.resolve())
        if live is None or not live.is_ready():
            print("control plane: not running")
            return 1
        print(f"control plane: running at {live.api_url}; kubeconfig {live.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
