"""Deploying from Python: Flow.to_deployment, Flow.deploy and Flow.adeploy.

Role: turns keyword arguments into the Deployment manifest through the builder `flowpod
deploy` uses (flowpod.deployments), so `flow.to_deployment(...)` equals `flowpod deploy ...
--dry-run`; `adeploy` (the async core) applies it with server-side apply from a laptop
through flowpod_kube.apply, and `deploy` is its sync wrapper. flowpod_kube needs the `cli`
extra (kubernetes-asyncio and a kubeconfig loader): it is imported here, on use, and this
module is the one edge from the engine package to it that the import contracts allow, so
the in-pod path never loads a kubeconfig. Cron expressions, RRULEs and time zones are
checked by the API server's schema and the operator, not here (their parser is the
operator's). Callers: flowpod._runtime.flows.Flow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Mapping

from flowpod import deployments
from flowpod.deployments import DeploymentError

__all__ = ["to_deployment", "adeploy", "deploy", "CLI_EXTRA_HINT", "extra_missing"]

CLI_EXTRA_HINT = "pip install 'flowpod[cli]'"
# The modules flowpod_kube needs that only the `cli` extra installs.
_EXTRA_MODULES = {"flowpod_kube", "kubernetes_asyncio", "aiohttp", "yaml"}


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _seconds(interval: Any) -> int:
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or seconds <= 0 or seconds != int(seconds)):
        raise DeploymentError(f"interval={interval!r} is not a whole number of seconds > 0",
                              "pass e.g. interval=600 or interval=timedelta(minutes=10)")
    return int(seconds)


def _scheduling(cron: Any, interval: Any, rrule: Any, timezone: str | None, paused: bool,
                missed_run_policy: str | None,
                concurrency_policy: str | None) -> dict[str, Any]:
    crons, rrules = _listed(cron), _listed(rrule)
    intervals = [_seconds(i) for i in _listed(interval)]
    if not (crons or intervals or rrules):
        given = [k for k, v in (("timezone", timezone), ("paused", paused or None),
                                ("missed_run_policy", missed_run_policy),
                                ("concurrency_policy", concurrency_policy)) if v is not None]
        if given:
            raise DeploymentError(f"{given[0]}= has no effect without a schedule",
                                  "pass cron=, interval= or rrule=, or drop "
                                  f"{' and '.join(given)}")
        return {}
    if timezone is not None and not (crons or rrules):
        raise DeploymentError("timezone= applies to cron= and rrule= only; an interval counts "
                              "seconds, whatever the time zone",
                              "drop timezone=, or give the schedule as cron= or rrule=")
    entries = deployments.schedule_entries(crons, intervals, rrules, timezone)
    return deployments.schedule_fields(entries, paused=paused,
                                       missed_run_policy=missed_run_policy,
                                       concurrency_policy=concurrency_policy)


def to_deployment(flow: Any, name: str, *, image: str, entrypoint: str | None = None,
                  parameters: Mapping[str, Any] | None = None, namespace: str | None = None,
                  cron: str | Iterable[str] | None = None, interval: Any = None,
                  rrule: str | Iterable[str] | None = None, timezone: str | None = None,
                  paused: bool = False, missed_run_policy: str | None = None,
                  concurrency_policy: str | None = None, concurrency_limit: int | None = None,
                  collision_strategy: str | None = None, retries: int | None = None,
                  timeout_seconds: int | None = None,
                  service_account: str | None = None) -> dict[str, Any]:
    """The Deployment manifest for ``flow`` -- what `flowpod deploy ENTRYPOINT --dry-run`
    prints for the same options. Pure: no cluster is used. Raises DeploymentError naming
    the argument and the fix."""
    deployments.check_name(name)
    scheduling = _scheduling(cron, interval, rrule, timezone, paused, missed_run_policy,
                             concurrency_policy)
    values = dict(parameters or {})
    deployments.check_parameters(flow, values, "fix the value in parameters=")
    if collision_strategy is not None and concurrency_limit is None:
        raise DeploymentError("collision_strategy= needs concurrency_limit=",
                              "pass concurrency_limit=N (the most runs at once)")
    return deployments.deployment_manifest(
        entrypoint=entrypoint or deployments.default_entrypoint(flow), name=name,
        image=image, parameter_schema=deployments.parameter_schema(flow), parameters=values,
        namespace=namespace, retries=retries, timeout_seconds=timeout_seconds,
        service_account=service_account, scheduling=scheduling,
        concurrency_limit=concurrency_limit, collision_strategy=collision_strategy)


def extra_missing(exc: ImportError, what: str) -> ImportError:
    """The ImportError to raise when importing flowpod_kube failed: one that names the
    extra to install, or `exc` itself when something else is broken."""
    missing = getattr(exc, "name", None) or ""
    if missing.split(".")[0] not in _EXTRA_MODULES:
        return exc
    return ImportError(f"{what} needs a Kubernetes client ('{missing}' is not "
                       f"installed): {CLI_EXTRA_HINT}", name=missing)


def _kube_apply() -> Any:
    """flowpod_kube.apply, or an ImportError that says which extra to install."""
    try:
        from flowpod_kube import apply
    except ImportError as exc:
        raise extra_missing(exc, "deploying") from exc
    return apply


async def adeploy(flow: Any, name: str, *, image: str, kubeconfig: str | None = None,
                  context: str | None = None, **options: Any) -> str:
    """Apply the Deployment (server-side apply, as `flowpod deploy` does) through the
    kubeconfig's cluster; the namespace defaults to the kubeconfig context's. Returns what
    happened to it: "created", "configured" or "unchanged"."""
    manifest = to_deployment(flow, name, image=image, **options)
    apply = _kube_apply()
    return await apply.apply_deployment(manifest, kubeconfig=kubeconfig, context=context)


def deploy(flow: Any, name: str, *, image: str, **options: Any) -> str:
    """adeploy for sync code (not from inside a running event loop: await adeploy there)."""
    import anyio

    async def main() -> str:
        return await adeploy(flow, name, image=image, **options)

    return anyio.run(main)
