"""`python -m flowpod_devcluster.node --state-dir DIR --node-name NAME --node-ip IP
[--image-map FILE]`: the test node's entry point, started (and stopped with SIGTERM) by
flowpod_devcluster.plane.

Reads DIR/node.kubeconfig (identity system:node:NAME), DIR/pki/kubelet-serving.{crt,key} and
DIR/pki/ca.crt, DIR/cluster.json (api_port); keeps pod files under DIR/pods/.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from flowpod_devcluster.node import (cgroups, contexts, images, kubeapi, kubelet, registering,
                                     serving)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowpod_devcluster.node", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="the plane's state directory (kubeconfigs, pki/, cluster.json)")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--node-ip", required=True,
                        help="InternalIP to report; containerLogs is served on it")
    parser.add_argument("--image-map", type=Path, default=None,
                        help="JSON image map (format: flowpod_devcluster/node/images.py); "
                             "default built in")
    parser.add_argument("--cpu", default="16",
                        help="cpu capacity to advertise; the node does not enforce cpu, so it "
                             "advertises enough for many concurrent test pods (default 16)")
    parser.add_argument("--max-pods", type=int, default=110)
    return parser


def _build(args: argparse.Namespace) -> tuple[kubelet.Kubelet, kubeapi.Api]:
    state = args.state_dir.resolve()
    credentials = kubeapi.load_kubeconfig(state / "node.kubeconfig", state / "kubelet")
    api = kubeapi.Api(credentials)
    capacity = registering.detect_capacity(state, cpu=args.cpu, pods=args.max_pods)
    server = urlsplit(credentials.server)
    api_port = server.port or json.loads((state / "cluster.json").read_text())["api_port"]
    ctx = contexts.NodeContext(
        api=api, image_map=images.load(args.image_map, workdir=Path.cwd()),
        memory_cgroups=cgroups.discover(args.node_name), node_name=args.node_name,
        node_ip=args.node_ip, api_host=server.hostname or "127.0.0.1", api_port=api_port,
        pods_dir=state / "pods", allocatable_cpu=capacity.cpu,
        allocatable_memory=capacity.memory)
    if not ctx.memory_cgroups.available:
        logging.warning("memory limits cannot be enforced: %s", ctx.memory_cgroups.problem)
    pki = state / "pki"
    context = serving.server_context(pki / "kubelet-serving.crt", pki / "kubelet-serving.key",
                                     pki / "ca.crt")
    return kubelet.Kubelet(ctx, capacity=capacity, tls=context), api


async def _stop_on_signal(node: kubelet.Kubelet) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logging.info("signal %d: stopping containers and exiting", signum)
            await node.stop()
            return


async def _main(args: argparse.Namespace) -> None:
    node, api = _build(args)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, node)
            await node.run()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await api.aclose()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    anyio.run(_main, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
