"""The one exception type for user errors in the `flowpod` CLI.

Role: every mistake a user can make (a missing FlowRun, an unreachable cluster, a bad
entrypoint, a malformed `-p`) is raised as `CliError(problem, fix)`; the command layer
(flowpod_operator.cli._commands) prints it in one or two lines and exits 1, never with a
traceback. Callers: every module of flowpod_operator.cli.
"""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A user error: what is wrong (naming the object) and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None, *, exit_code: int = 1,
                 http_status: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code
        # Set when the API server caused it, so callers can react (e.g. 400 while a container
        # is still being created) without parsing messages.
        self.http_status = http_status
