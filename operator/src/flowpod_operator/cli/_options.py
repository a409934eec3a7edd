"""The options several `flowpod` commands share (where to connect, parameters, output
format) and the choices of `flowpod deploy`, declared once as Typer annotations.
Caller: flowpod_operator.cli._commands.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["Kubeconfig", "Context", "Namespace", "Params", "Output", "Strategy"]

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



class Strategy(str, enum.Enum):
    """spec.collisionStrategy of a Deployment."""

    ENQUEUE = "Enqueue"
    CANCEL_NEW = "CancelNew"
