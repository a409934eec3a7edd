"""The `flowpod` command line: deploy flows, start, watch and cancel runs, read logs.

Role: public surface of the CLI package; the console script `flowpod` (pyproject.toml) calls
`main`. Tests build the app with injected dependencies through `build_app(Deps(...))`.
Implementation: ._commands (Typer wiring), ._actions (async run command bodies, Deps),
._deploying (deploy), ._output (yaml/json and tables), ._client (the
API session, on kubernetes-asyncio like the operator; its configuration comes from
flowpod_kube.connecting), ._watching (watch + log streams), ._flows (flow loading
and parameter schemas), ._render (Rich output), ._errors (CliError). The CLI never imports
kopf: `flowpod operator` loads the operator on use (ARCHITECTURE.md, "Package layers").
"""

from __future__ import annotations

from flowpod_operator.cli._actions import Deps
from flowpod_operator.cli._commands import build_app, main
from flowpod_operator.cli._errors import CliError

__all__ = ["main", "build_app", "Deps", "CliError"]
