"""The exception type for user errors in the `flowpod` CLI.

Role: every mistake a user can make (a missing FlowRun, an unreachable cluster, a bad
entrypoint, a malformed `-p`) is raised as `CliError(problem, fix)` or as another error of
the shared vocabulary (flowpod_kube.errors.KubeError, which CliError extends); the
command layer (flowpod_operator.cli._commands) prints it in one or two lines and exits 1,
never with a traceback. Callers: every module of flowpod_operator.cli.
"""

from __future__ import annotations

from flowpod_kube.errors import KubeError

__all__ = ["CliError"]


class CliError(KubeError):
    """A user error: what is wrong (naming the object) and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None, *, exit_code: int = 1,
                 http_status: int | None = None) -> None:
        super().__init__(problem, fix, status=http_status)
        self.exit_code = exit_code

    @property
    def http_status(self) -> int | None:
        """The API server's status code when it caused the error."""
        return self.status
