"""`python -m flowpod_devcluster up|down|status|env [--state-dir DIR]`: the Makefile's
cluster-up / cluster-down, and what the demo and the benchmarks start the plane with.

`up` ends with the `export KUBECONFIG=... PATH=...` lines that point kubectl, helm and flowpod
at the plane (unless --no-exports: the demo prints them at its own end); `env` prints only
those lines, for `eval "$(python -m flowpod_devcluster env)"`.
Works from any directory; the state directory defaults to the checkout's .cluster/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowpod_devcluster import plane


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowpod_devcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=plane.REPO_ROOT / ".cluster",
                        help="where the plane keeps its PKI, kubeconfig, logs and PIDs")
    parser.add_argument("--no-exports", action="store_true",
                        help="up: do not end with the export lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "up":
        cluster = plane.up(args.state_dir)
        if not args.no_exports:
            print("\nTo use kubectl, helm and flowpod with this plane, run:")
            print("\n".join(plane.shell_exports(cluster)))
        return 0
    if args.action == "down":
        plane.down(args.state_dir)
        return 0
    live = plane.load(args.state_dir.resolve())
    if live is None or not live.is_ready():
        print("control plane: not running", file=sys.stderr if args.action == "env" else sys.stdout)
        return 1
    if args.action == "env":
        print("\n".join(plane.shell_exports(live)))
    else:
        print(f"control plane: running at {live.api_url}; kubeconfig {live.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
