"""The `flowpod` command line (Typer): deploy, run, cancel, logs, get, crds, operator.

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

from flowpod_operator._kube.errors import KubeError
from flowpod_operator.cli import _actions, _errors, _flows
from flowpod_operator.cli._actions import Deps

if TYPE_CHECKING:
    from flowpod_operator.cli._client import Kube

__all__ = ["build_app", "main"]

Kubeconfig = Annotated[Optional[Path], typer.Option(
    "--kubeconfig", help="Path to a kubeconfig (default: $KUBECONFIG, then ~/.kube/config, "
                         "then the in-cluster service account).", show_default=False)]
Context = Annotated[Optional[str], typer.Option(
    "--context", help="Kubeconfig context (default: current-context).", show_default=False)]
Namespace = Annotated[Optional[str], typer.Option(
    "--namespace", "-n", help="Namespace (default: the context's, else 'default').",
    show_default=False)]
Params = Annotated[Optional[list[str]], typer.Option(
    "--param", "-p", help="Flow parameter KEY=VALUE; VALUE is read as JSON when it parses "
                          "(3, true, [1,2]) and as a string otherwise. Repeatable.",
    show_default=False)]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="Print the object(s) as yaml or json.", show_default=False)]


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
    from flowpod_operator._kube.connecting import Target

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


def build_app(deps: Deps | None = None) -> typer.Typer:
    """The `flowpod` Typer application, wired to ``deps``."""
    deps = deps or Deps()
    app = typer.Typer(name="flowpod", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False,
                      help="Run Prefect-style flows as Kubernetes pods: deploy flows, start, "
                           "watch and cancel runs, read their logs.")

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
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Print the Deployment instead of applying it (for GitOps).")
        ] = False,
        output: Output = None, namespace: Namespace = None, kubeconfig: Kubeconfig = None,
        context: Context = None,
    ) -> None:
        """Apply or print (--dry-run) a Deployment, its parameterSchema read from the flow."""
        _guard(deps, lambda: _actions.check_output(output))
        manifest = _guard(deps, lambda: _actions.deployment_manifest(
            entrypoint, name, image, param, namespace=namespace, retries=retries,
            timeout_seconds=timeout_seconds, service_account=service_account))
        if dry_run:
            _actions.dump(deps, manifest, output or "yaml")
            return

        async def action(kube: Kube, ns: str) -> int:
            manifest["metadata"]["namespace"] = ns
            return await _actions.apply_deployment(kube, deps, manifest, output)

        _execute(deps, (kubeconfig, context, namespace), action)

    @app.command()
    def run(
        deployment: Annotated[str, typer.Argument(help="The Deployment to run.")],
        param: Params = None,
        name: Annotated[Optional[str], typer.Option(
            "--name", help="FlowRun name (default: DEPLOYMENT-xxxxx).")] = None,
        watch: Annotated[bool, typer.Option(
            "--watch", "-w", help="Show state changes and the pod's logs until the run ends; "
                                  "exit 1 unless it Completed.")] = False,
        logs: Annotated[bool, typer.Option(help="With --watch, tail the pod's logs.")] = True,
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Create a FlowRun of a Deployment and, with --watch, follow it to its end."""
        parameters = _guard(deps, lambda: _flows.parse_parameters(param))
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.start_run(kube, deps, ns, deployment, parameters,
                                                     name=name, watch=watch, logs=logs))

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
        namespace: Namespace = None, kubeconfig: Kubeconfig = None, context: Context = None,
    ) -> None:
        """Print the logs of a FlowRun's current pod."""
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.show_logs(kube, deps, ns, run, follow=follow))

    @app.command()
    def get(
        run: Annotated[Optional[str], typer.Argument(
            help="One FlowRun to show in detail; every run when left out.")] = None,
        all_namespaces: Annotated[bool, typer.Option(
            "--all-namespaces", "-A", help="List the runs of every namespace.")] = False,
        output: Output = None, namespace: Namespace = None, kubeconfig: Kubeconfig = None,
        context: Context = None,
    ) -> None:
        """A table of FlowRuns with state and duration, or one run in detail."""
        _guard(deps, lambda: _actions.check_output(output))
        _execute(deps, (kubeconfig, context, namespace),
                 lambda kube, ns: _actions.show_runs(kube, deps, ns, run,
                                                     all_namespaces=all_namespaces,
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
