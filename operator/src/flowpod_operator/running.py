"""Running the operator: `python -m flowpod_operator` and the functions behind it.

Role: the public entry. `main(argv)` parses the command line (also what the `flowpod
operator` CLI command forwards to), `run(options)` blocks until SIGINT/SIGTERM, and
`serve(options)` is the same as a coroutine. It connects
(flowpod_operator._runtime.connecting), checks that the CRDs are served, then runs kopf's
watches (._runtime.wiring) next to the Reconciler's workers (._runtime.loop) in one event
loop -- with `--leader-election`, only once it holds the Lease (._runtime.leading), and with
`--shards`, only for its own part of the runs (._decisions.sharding). Callers:
flowpod_operator.__main__, flowpod_operator.cli (the `flowpod operator` command), tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn, Sequence

import kopf
from flowpod_operator._decisions import deciding, manifests
from flowpod_operator._decisions.sharding import Shard
from flowpod_kube.connecting import api_client
from flowpod_kube.errors import KubeError
from flowpod_operator._runtime import connecting, leading, logs, priming, wiring
from flowpod_operator._runtime.watching import FlowRunWatch
from flowpod_operator._runtime.eventing import EventRecorder
from flowpod_operator._runtime.indexing import Index
from flowpod_operator._runtime.kubeapi import KubeApi
from flowpod_operator._runtime.loop import Reconciler
from flowpod_operator._runtime.metrics import Metrics
from flowpod_operator._runtime.serving import start_endpoints

__all__ = ["OperatorOptions", "serve", "run", "main", "build_parser", "options_from_args"]

_log = logging.getLogger("flowpod_operator")


@dataclass(frozen=True)
class OperatorOptions:
    """How to run the operator. No namespaces means all namespaces (cluster-wide)."""

    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    workers: int = 32
    resync_seconds: float = 30.0
    service_account: str = manifests.DEFAULT_SERVICE_ACCOUNT
    log_level: str = "INFO"
    max_concurrent_runs: int | None = None
    ttl_seconds_after_finished: int | None = None
    # Off: this process reconciles at once. On: it campaigns for `lease` first (HA replicas).
    leader_election: bool = False
    lease_name: str = "flowpod-operator"
    lease_namespace: str | None = None  # None: the connection's namespace
    lease_duration_seconds: int = 15
    lease_renew_deadline_seconds: float = 10.0
    lease_retry_period_seconds: float = 2.0
    # This operator's part of the runs (--shards N --shard I); each shard has its own Lease.
    shard: Shard = Shard()

    def lease(self, default_namespace: str) -> leading.LeaseSettings:
        name = self.lease_name
        if self.shard.count > 1:
            name = f"{name}-shard-{self.shard.index}"
        return leading.LeaseSettings(
            name, self.lease_namespace or default_namespace,
            leading.default_identity(), self.lease_duration_seconds,
            self.lease_renew_deadline_seconds, self.lease_retry_period_seconds)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def serve(options: OperatorOptions, *, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until `stop` is set)."""
    connection = await connecting.load_connection(options.kubeconfig, options.context)
    cfg = connection.configuration
    # The user agent is how managedFields name our writes.
    async with api_client(connection, user_agent="flowpod-operator") as client:
        api = KubeApi(client)
        await api.check_crds()
        events = EventRecorder(api.post_event, clock=_utcnow)
        index = Index()
        metrics = Metrics(index.flowrun_items)
        api.on_error = lambda verb: metrics.api_errors.labels(verb).inc()
        reconciler = Reconciler(
            index, api, events, clock=_utcnow, metrics=metrics,
            policy=deciding.Policy(
                service_account=options.service_account,
                ttl_seconds_after_finished=options.ttl_seconds_after_finished),
            workers=options.workers, resync_seconds=options.resync_seconds,
            max_concurrent_runs=options.max_concurrent_runs, shard=options.shard)
        registry = wiring.build_registry(reconciler, lambda: connecting.connection_info(cfg))
        base = f"http://{options.health_host}:{options.health_port}"
        endpoint = f"{base}/healthz" if options.health_port else None
        _log.info("operator starting", extra={
            "namespaces": list(options.namespaces) or "all", "api": cfg.host,
            "shard": f"{options.shard.index}/{options.shard.count}",
            "health": endpoint, "metrics": f"{base}/metrics" if endpoint else None})
        ready = asyncio.Event()
        standby: list[str] = []
        runner = (await start_endpoints(options.health_host, options.health_port, ready,
                                        metrics, standby=lambda: standby[-1] if standby
                                        and not ready.is_set() else None)
                  if options.health_port else None)
        tasks: list[asyncio.Task[None]] = []

        async def reconcile() -> None:
            standby.clear()
            # The workers wait for the operator's own start-up listing (priming), which
            # runs only once this process leads: a standby lists nothing. The FlowRun
            # watches go on from that listing (._runtime.watching).
            flowruns = [FlowRunWatch(api, reconciler.intake, namespace)
                        for namespace in options.namespaces or (None,)]
            primed = asyncio.create_task(
                priming.prime(api, reconciler.intake, options.namespaces, flowruns),
                name="flowpod start-up listing")
            tasks.append(primed)
            tasks.extend(reconciler.start(asyncio.shield(primed)))
            tasks.extend(asyncio.create_task(_follow(primed, watch), name="flowpod FlowRun watch")
                         for watch in flowruns)
            await kopf.operator(
                registry=registry, settings=wiring.build_settings(), standalone=True,
                clusterwide=not options.namespaces, namespaces=list(options.namespaces),
                stop_flag=stop, ready_flag=ready)

        try:
            if options.leader_election:
                stop = stop or _stop_on_signals()
                # Its own connections: a renewal never queues behind the workers' requests.
                async with api_client(connection,
                                      user_agent="flowpod-operator-leader-election") as own:
                    await leading.lead(own, options.lease(connection.namespace), reconcile,
                                       stop=stop, on_standby=standby.append)
            else:
                await reconcile()
        except leading.LostLease as exc:
            _exit_lost_lease(exc)
        finally:
            # The writers go first: after a lost Lease nothing may be written any more.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
        _log.info("operator stopped")


async def _follow(primed: asyncio.Task[None], watch: FlowRunWatch) -> None:
    await asyncio.shield(primed)
    await watch.follow()


def _exit_lost_lease(exc: leading.LostLease) -> NoReturn:
    """Exit now, non-zero, without unwinding: no worker may write once the Lease is lost,
    and kopf's orderly shutdown could take seconds. Kubernetes' own controllers do the same
    (client-go's OnStoppedLeading exits); the Deployment restarts the pod as a standby."""
    _log.error("stopped leading: %s", exc)
    logging.shutdown()
    os._exit(1)


def _stop_on_signals() -> asyncio.Event:
    """SIGINT/SIGTERM stop a standby too (kopf installs its own handlers once it runs)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run(options: OperatorOptions) -> None:
    """Blocking form of `serve`."""
    asyncio.run(serve(options))


def build_parser(prog: str = "python -m flowpod_operator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="flowpod operator: runs FlowRuns as Kubernetes Jobs and "
                               "keeps their states true.")
    parser.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                        help="watch this namespace (repeatable); default: all namespaces")
    parser.add_argument("--kubeconfig", metavar="PATH",
                        help="kubeconfig to use; default: the in-cluster service account")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    parser.add_argument("--health-port", type=int, default=8080, metavar="PORT",
                        help="serve GET /healthz and GET /metrics (Prometheus) on this port "
                             "(0 = off; default 8080)")
    parser.add_argument("--health-host", default="0.0.0.0", metavar="ADDR",
                        help="address for the health endpoint (default 0.0.0.0)")
    parser.add_argument("--workers", type=int, default=32,
                        help="FlowRuns reconciled concurrently (default 32)")
    parser.add_argument("--resync-seconds", type=float, default=30.0,
                        help="re-examine every unfinished run this often (default 30)")
    parser.add_argument("--service-account", default=manifests.DEFAULT_SERVICE_ACCOUNT,
                        help="service account of flow-run pods when the Deployment names "
                             f"none (default {manifests.DEFAULT_SERVICE_ACCOUNT})")
    parser.add_argument("--max-concurrent-runs", type=int, default=None, metavar="N",
                        help="at most N runs hold a slot at once across all Deployments; "
                             "others wait, oldest first (default: no limit)")
    parser.add_argument("--ttl-seconds-after-finished", type=int, default=None, metavar="S",
                        help="delete finished runs S seconds after they end, unless the "
                             "FlowRun or its Deployment sets ttlSecondsAfterFinished "
                             "(default: keep them)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--shards", type=int, default=1, metavar="N",
                        help="split FlowRuns across N operators by a hash of "
                             "namespace/Deployment (or run) name (default 1: all)")
    parser.add_argument("--shard", type=int, default=0, metavar="I",
                        help="which of the --shards this operator is, 0..N-1 (default 0)")
    _add_lease_flags(parser.add_argument_group(
        "high availability", "run several replicas; the holder of a Lease reconciles, the "
        "others stand by and take over when it expires"))
    return parser


def _add_lease_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--leader-election", action=argparse.BooleanOptionalAction,
                       default=False,
                       help="reconcile only while holding the Lease (default: off)")
    group.add_argument("--lease-name", default="flowpod-operator", metavar="NAME",
                       help="name of the coordination.k8s.io Lease (default flowpod-operator)")
    group.add_argument("--lease-namespace", default=None, metavar="NS",
                       help="namespace of the Lease (default: the operator's own namespace, "
                            "from the service account or the kubeconfig context)")
    group.add_argument("--lease-duration", type=int, default=15, metavar="S",
                       help="a standby takes over after the Lease went unrenewed this long "
                            "(default 15)")
    group.add_argument("--lease-renew-deadline", type=float, default=10.0, metavar="S",
                       help="the leader exits when it could not renew for this long "
                            "(default 10)")
    group.add_argument("--lease-retry-period", type=float, default=2.0, metavar="S",
                       help="how often to renew, and how often a standby tries (default 2)")


def options_from_args(args: argparse.Namespace) -> OperatorOptions:
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.resync_seconds <= 0:
        raise ValueError("--resync-seconds must be positive")
    if args.max_concurrent_runs is not None and args.max_concurrent_runs < 1:
        raise ValueError("--max-concurrent-runs must be at least 1 (omit it for no limit)")
    if args.ttl_seconds_after_finished is not None and args.ttl_seconds_after_finished < 0:
        raise ValueError("--ttl-seconds-after-finished must be 0 or more (omit it to keep "
                         "finished runs)")
    if args.leader_election:
        leading.LeaseSettings(args.lease_name, "", "", args.lease_duration,
                              args.lease_renew_deadline, args.lease_retry_period).check()
    if args.kubeconfig and not Path(args.kubeconfig).expanduser().is_file():
        raise ValueError(f"--kubeconfig {args.kubeconfig}: no such file; pass the path of a "
                         "kubeconfig, or omit it to use the in-cluster service account")
    return OperatorOptions(
        namespaces=tuple(dict.fromkeys(args.namespace)), kubeconfig=args.kubeconfig,
        context=args.context, health_host=args.health_host, health_port=args.health_port,
        workers=args.workers, resync_seconds=args.resync_seconds,
        service_account=args.service_account, log_level=args.log_level,
        max_concurrent_runs=args.max_concurrent_runs,
        ttl_seconds_after_finished=args.ttl_seconds_after_finished,
        leader_election=args.leader_election, lease_name=args.lease_name,
        lease_namespace=args.lease_namespace, lease_duration_seconds=args.lease_duration,
        lease_renew_deadline_seconds=args.lease_renew_deadline,
        lease_retry_period_seconds=args.lease_retry_period,
        shard=Shard(args.shard, args.shards))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, configure JSON logging, run; 0 on a clean stop, 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logs.configure(options.log_level)
    try:
        run(options)
    except (ValueError, KubeError) as exc:
        _log.error(str(exc))
        print(f"flowpod operator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
