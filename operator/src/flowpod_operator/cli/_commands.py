"""The `flowpod` command line (Typer): deploy, run, watch, resume, retry, pause, unpause,
cancel, delete, logs, get, crds, operator.

Role: the thin sync layer. Each command parses its flags and runs one async function of
flowpod_operator.cli._actions with anyio.run; user errors (CliError) print as "error: ..." plus
the fix and exit 1, never as a traceback. --kubeconfig, --context and -n/--namespace work on
every command that talks to a cluster, as in kubectl. Callers: flowpod_operator.cli.main (the
`flowpod` console script) and tests through `build_app(Deps(...))`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Optional

import anyio
import typer
from rich.text import Text

from flowpod_kube.errors import KubeError
from flowpod_operator.cli import (_actions, _deploying, _errors, _flows, _output, _retry,
                                  _runs, _schedules)
from flowpod_operator.cli._actions import Deps
from flowpod_operator.cli._options import (Context, Kubeconfig, Namespace, Output, Params,
                                           Strategy)

if TYPE_CHECKING:
    from flowpod_operator.cli._client import Kube

__all__ = ["build_app", "main"]


def _fail(deps: Deps, error: KubeError) -> typer.Exit:
    deps.err.print(Text.assemble(("error: ", "bold red"), error.problem))
    if error.fix:
        deps.err.print(Text.assemble(("  fix: ", "bold"), error.fix))
    return typer.Exit(getattr(error, "exit_code", 1))


def _execute(deps: Deps, where: tuple[Optional[Path], Optional[str], Optional[str]],
             action: Callable[[Kube, str], Awaitable[int]]) -> None:
    """The sync wrapper: load the configuration for `where` (--kubeconfig, --context,
    --namespace), open a session, run ``action(kube, namespace)``."""
    # Imported here: only commands that talk to a cluster load the client stack.
    from flowpod_kube.connecting import Target

    target = Target(*where)

    async def session() -> int:
        connection = await deps.load_config(target)
        async with deps.connect(connection) as kube:
            return await action(kube, target.namespace or kube.namespace)

    try:
        code = anyio.run(session)
    except KubeError as error:
        raise _fail(deps, error) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


def _guard(deps: Deps, fn: Callable[[], Any]) -> Any:
    """Run local (no-cluster) checks with the same error printing."""
    try:
        return fn()
    except _errors.CliError as error:
        raise _fail(deps, error) from None


_DEPLOYMENT_WORDS = ("deployments", "deployment", "fdeploy")
_RUN_WORDS = ("runs", "run", "flowruns", "flowrun", "fr")


def _kind_and_name(what: str | None, name: str | None) -> tuple[str, str | None]:
    """`get [RUN]`, `get runs [RUN]`, `get deployments [NAME]` as (kind, name)."""
    if what in _DEPLOYMENT_WORDS:
        return "deployments", name
    if what in _RUN_WORDS:
        return "runs", name
    if name is not None:
        raise _errors.CliError(f"`flowpod get {what} {name}`: '{what}' is not a kind",
                               "use `flowpod get RUN`, `flowpod get runs [RUN]` or "
                               "`flowpod get deployments [NAME]`")
    return "runs", what


def _check_run_target(deployment: str | None, entrypoint: str | None,
                      image: str | None) -> None:
    if deployment is not None and (entrypoint or image):
        raise _errors.CliError("give a Deployment or --entrypoint/--image, not both",
                               "drop DEPLOYMENT for an ad-hoc run, or the flags to run the "
                               "Deployment")
    if deployment is None and not (entrypoint and image):
        raise _errors.CliError("nothing to run: give a Deployment, or --entrypoint FILE:FLOW "
                               "with --image IMAGE for an ad-hoc run",
                               "e.g. `flowpod run hello` or `flowpod run --entrypoint "
                               "flows/hello.py:hello --image my/flows:1`")


def _print_version(deps: Deps) -> Callable[[bool], None]:
    def show(value: bool) -> None:
        if value:
            from importlib.metadata import version

            deps.out.print(f"flowpod {version('flowpod')}", markup=False, highlight=False)
            raise typer.Exit()
    return show


def build_app(deps: Deps | None = None) -> typer.Typer:
    """The `flowpod` Typer application, wired to ``deps``."""
    deps = deps or Deps()
    app = typer.Typer(name="flowpod", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      help="Run Prefect-style flows as Kubernetes pods: deploy flows, start, "
                           "watch and cancel runs, read their logs.")

    @app.callback()
    def main_options(
        # A default, not Annotated: the callback closes over `deps`, which a string
        # annotation (from __future__ import annotations) could not see.
        version: bool = typer.Option(False, "--version", is_eager=True,
                                     callback=_print_version(deps),
                                     help="Print flowpod's version and exit."),
    ) -> None:
        """Run Prefect-style flows as Kubernetes pods: deploy flows, start, watch and cancel
        runs, read their logs."""

    @app.command()
    def deploy(
        entrypoint: Annotated[str, typer.Argument(
            help="The flow: path/to/file.py:flow_fn (relative to here and to the image's "
                 "working directory) or package.module:flow_fn.")],
        name: Annotated[str, typer.Option("--name", help="Deployment name.")],
        image: Annotated[str, typer.Option("--image", help="Image holding the flow code.")],
        param: Params = None,
        retries: Annotated[Optional[int], typer.Option(
            help="Infrastructure retries after a crash.", min=0)] = None,
        timeout_seconds: Annotated[Optional[int], typer.Option(
            help="Wall-clock limit of one attempt, in seconds.", min=1)] = None,
        service_account: Annotated[Optional[str], typer.Option(
            help="ServiceAccount of the flow-run pods.")] = None,
        concurrency_limit: Annotated[Optional[int], typer.Option(
            help="At most N runs of this Deployment at once.", min=1, metavar="N")] = None,
        collision_strategy: Annotated[Optional[Strategy], typer.Option(
            help="A run over the limit waits (Enqueue, the default) or ends Cancelled "
                 "(CancelNew).")] = None,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Print the Deployment instead of applying it (for GitOps).")
        ] = False,
        no_import: Annotated[bool, typer.Option(
            "--no-import", help="Do not import the flow here (its packages may exist only in "
                                "the image); needs --parameter-schema.")] = False,
        parameter_schema: Annotated[Optional[str], typer.Option(
            "--parameter-schema", metavar="FILE", help="JSON schema of the flow's parameters "
            "(JSON or YAML file), used instead of the one read from the flow.",
            show_default=False)] = None,
        cron: Annotated[Optional[list[str]], typer.Option(
            "--cron", metavar="EXPR", help="Start runs on this cron expression (five fields, "
            "or @hourly, @daily, ...), read in --timezone. Repeatable.",
            show_default=False)] = None,
        interval: Annotated[Optional[list[int]], typer.Option(
            "--interval", metavar="SECONDS", help="Start a run every SECONDS seconds. "
            "Repeatable.", min=1, show_default=False)] = None,
        rrule: Annotated[Optional[list[str]], typer.Option(
            "--rrule", metavar="RULE", help="Start runs on this RFC 5545 recurrence rule, "
            "e.g. 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9', read in --timezone. Repeatable.",
            show_default=False)] = None,
        timezone: Annotated[Optional[str], typer.Option(
            "--timezone", metavar="ZONE", help="IANA time zone of every --cron and --rrule, "
            "e.g. Europe/Berlin (default UTC).", show_default=False)] = None,
        paused: Annotated[bool, typer.Option(
            "--paused", help="Deploy with the schedules paused (`flowpod unpause` starts "
                             "them).")] = False,
        missed_run_policy: Annotated[Optional[str], typer.Option(
            "--missed-run-policy", metavar="POLICY", help="Due times missed while the "
            f"operator was down: {', '.join(_schedules.MISSED_RUN_POLICIES)} (default "
            "RunLatest).", show_default=False)] = None,
        concurrency_policy: Annotated[Optional[str], typer.Option(
            "--concurrency-policy", metavar="POLICY", help="A due time while a scheduled run "
            f"is live: {', '.join(_schedules.CONCURRENCY_POLICIES)} (default Allow).",
            show_default=False)] = None,
        output: Output = None, namespace: Namespace = None, kubeconfig: Kubeconfig = None,
        context: Context = None,
    ) -> None:
        """Apply or print (--dry-run) a Deployment, its parameterSchema read from the flow."""
        _guard(deps, lambda: _output.check_output(output))
        schedule = _schedules.ScheduleFlags(
            tuple(cron or ()), tuple(interval or ()), tuple(rrule or ()), timezone, paused,
            missed_run_policy, concurrency_policy)
        manifest = _guard(deps, lambda: _deploying.deployment_manifest(
            entrypoint, name, image, param, namespace=namespace, retries=retries,
            timeout_seconds=timeout_seconds, service_account=service_account,
            no_import=no_import, schema_file=parameter_schema, schedule=schedule,
            concurrency_limit=concurrency_limit,
            collision_strategy=collision_strategy.value if collision_strategy else None))
        if dry_run:
            _output.dump(deps, manifest, output or "yaml")
            return

        async def action(kube: Kube, ns: str) -> int:
            manifest["metadata"]["namespace"] = ns
            return await _deploying.apply_deployment(kube, deps, manifest, output)

        _execute(deps, (kubeconfig, context, namespace), action)

    @app.command()
    def run(
        deployment: Annotated[Optional[str], typer.Argument(
            help="The Deployment to run (or use --entrypoint and --image).",
            show_default=False)] = None,
        param: Params = None,
        name: Annotated[Optional[str], typer.Option(
            "--name", help="FlowRun name (default: DEPLOYMENT-<UTC yyyymmddhhmmss>-xxxx, "
                           "which sorts by creation time).", show_default=False)] = None,
        entrypoint: Annotated[Optional[str], typer.Option(
            "--entrypoint", metavar="FILE:FLOW", help="Ad-hoc run of this flow (no "
            "Deployment); needs --image.", show_default=False)] = None,
        image: Annotated[Optional[str], typer.Option(
            "--image", help="Image of an ad-hoc run (with --entrypoint).",
            show_default=False)] = None,
        watch: Annotated[bool, typer.Option(
            "--watch", "-w", help="Show state changes and the pod's logs until the run ends, "
                                  "then its result; exit 1 unless it Completed.")] = False,
        logs: Annotated[bool, typer.Option(help="With --watch, tail the pod's logs.")] = True,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Create a FlowRun of a Deployment (or ad hoc) and, with --watch, follow it."""
        _guard(deps, lambda: _check_run_target(deployment, entrypoint, image))
        parameters = _guard(deps, lambda: _flows.parse_parameters(param))
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.start_run(kube, deps, ns, deployment, parameters,
                                                     name=name, watch=watch, logs=logs,
                                                     entrypoint=entrypoint, image=image))

    @app.command("watch")
    def watch_(
        run: Annotated[str, typer.Argument(help="The FlowRun to follow.")],
        logs: Annotated[bool, typer.Option(help="Tail the pod's logs.")] = True,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Follow an existing FlowRun to its end (states, logs, result); exit 1 unless it
        Completed."""
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.follow_and_summarise(kube, deps, ns, run, logs=logs))

    @app.command()
    def resume(
        run: Annotated[str, typer.Argument(help="The Paused or Suspended FlowRun to resume.")],
        input_json: Annotated[Optional[str], typer.Option(
            "--input", help="The input the flow waits for, as JSON, e.g. "
                            "'{\"approved\": true}' or '\"yes\"'.", show_default=False)] = None,
        fields: Annotated[Optional[list[str]], typer.Option(
            "--input-field", "-i", help="One field of the input, KEY=VALUE (VALUE as JSON "
                                        "when it parses, else a string). Repeatable.",
            show_default=False)] = None,
        timeout: Annotated[float, typer.Option(
            help="Seconds to wait for the operator to accept or refuse.")] = 30.0,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Resume a paused run (pause_flow_run or suspend_flow_run), with the input it waits
        for; the operator validates it first. Exit 1 when it refuses the input."""
        run_input = _guard(deps, lambda: _runs.parse_input(input_json, fields))
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _runs.resume_run(kube, deps, ns, run, run_input,
                                                   timeout=timeout))

    @app.command()
    def retry(
        run: Annotated[str, typer.Argument(help="The finished FlowRun to run again.")],
        from_failure: Annotated[bool, typer.Option(
            "--from-failure", help="Reuse the results its tasks persisted in its "
                                   "spec.resultStorage; run only the rest.")] = False,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the new run.")
                         ] = False,
        logs: Annotated[bool, typer.Option(help="With --watch, tail the pod's logs.")] = True,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Create RUN-retry-N: a new FlowRun with the same spec as a finished run."""
        _execute(deps, (kubeconfig, context, namespace), lambda kube, ns: _retry.retry_run(
            kube, deps, ns, run, from_failure=from_failure, watch=watch, logs=logs))

    def set_paused(name: str, paused: bool, where: tuple[Any, Any, Any]) -> None:
        _execute(deps, where, lambda kube, ns: _deploying.set_paused(kube, deps, ns, name,
                                                                      paused))

    @app.command()
    def pause(
        deployment: Annotated[str, typer.Argument(help="The Deployment to pause.")],
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Stop a Deployment's schedules (spec.paused); runs already started go on."""
        set_paused(deployment, True, (kubeconfig, context, namespace))

    @app.command()
    def unpause(
        deployment: Annotated[str, typer.Argument(help="The Deployment to unpause.")],
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Start a paused Deployment's schedules again, from the next due time on (times that
        passed while paused are skipped)."""
        set_paused(deployment, False, (kubeconfig, context, namespace))

    @app.command()
    def delete(
        runs: Annotated[Optional[list[str]], typer.Argument(
            help="The FlowRuns to delete.", show_default=False)] = None,
        deployment: Annotated[Optional[str], typer.Option(
            "--deployment", help="Delete every run of this Deployment (its "
                                 "flowpod.io/deployment label).", show_default=False)] = None,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Delete FlowRuns (with their Jobs and pods), by name or by Deployment."""
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _runs.delete_runs(kube, deps, ns, list(runs or []),
                                                    deployment))

    @app.command()
    def cancel(
        run: Annotated[str, typer.Argument(help="The FlowRun to cancel.")],
        wait: Annotated[bool, typer.Option("--wait", help="Wait until it is Cancelled.")
                        ] = False,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Request cancellation (spec.cancel): Cancelling, SIGTERM to the flow, Cancelled."""
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.cancel_run(kube, deps, ns, run, wait=wait))

    @app.command()
    def logs(
        run: Annotated[str, typer.Argument(help="The FlowRun whose logs to print.")],
        follow: Annotated[bool, typer.Option(
            "--follow", "-f", help="Wait for the pod and stream until it ends.")] = False,
        attempt: Annotated[Optional[int], typer.Option(
            "--attempt", help="The pod of this attempt (1, 2, ...) instead of the current one.",
            min=1, show_default=False)] = None,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Print the logs of a FlowRun's current pod (or of one attempt's)."""
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.show_logs(kube, deps, ns, run, follow=follow,
                                                     attempt=attempt))

    @app.command()
    def get(
        what: Annotated[Optional[str], typer.Argument(
            metavar="RUN|KIND",
            help="One FlowRun to show in detail (every run when left out), or a kind: "
                 "`runs` or `deployments`.",
            show_default=False)] = None,
        name: Annotated[Optional[str], typer.Argument(
            metavar="NAME", help="After a kind: the one object of it to show.",
            show_default=False)] = None,
        all_namespaces: Annotated[bool, typer.Option(
            "--all-namespaces", "-A", help="List the objects of every namespace.")] = False,
        output: Output = None, namespace: Namespace = None, kubeconfig: Kubeconfig = None,
        context: Context = None,
    ) -> None:
        """A table of FlowRuns (or Deployments) with their state, or one in detail."""
        _guard(deps, lambda: _output.check_output(output))
        kind, one = _guard(deps, lambda: _kind_and_name(what, name))
        show = _actions.show_deployments if kind == "deployments" else _actions.show_runs
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: show(kube, deps, ns, one, all_namespaces=all_namespaces,
                                       output=output))

    @app.command()
    def crds() -> None:
        """Print the flowpod CRDs (pipe them into `kubectl apply -f -`)."""
        from flowpod_operator.crds import crdgen  # pydantic-heavy: only this command needs it

        deps.out.print("---\n".join(crdgen.render_all().values()).rstrip(), markup=False)

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                 add_help_option=False)
    def operator(ctx: typer.Context) -> None:
        """Start the operator; flags as for `python -m flowpod_operator` (see --help)."""
        code = deps.operator_main(list(ctx.args))
        if code:
            raise typer.Exit(code)

    return app


def main() -> None:
    """The `flowpod` console script."""
    build_app()(prog_name="flowpod")
