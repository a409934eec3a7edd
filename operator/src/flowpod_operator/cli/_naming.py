"""Names of the FlowRuns the CLI creates: `<deployment>-<UTC yyyymmddhhmmss>-<4 random>`.

Role: a name that sorts by creation time (within one Deployment: `ls`, `kubectl get` and
`flowpod get` list runs in the order they were made), fits 63 characters (the Job, pod and
label names derived from it stay readable), and still differs between two runs started in
the same second (the random part; a clash is retried by the caller). Callers:
flowpod_operator.cli._actions (`flowpod run`).
"""

from __future__ import annotations

import re
import secrets
import string
from datetime import datetime, timezone

__all__ = ["MAX_RUN_NAME", "run_name", "random_suffix", "base_of_entrypoint"]

MAX_RUN_NAME = 63
_ALPHABET = string.ascii_lowercase + string.digits
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def random_suffix() -> str:
    """Four lower-case letters or digits (36**4 = 1.7 M per second and Deployment)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(4))


def run_name(base: str, now: datetime, suffix: str) -> str:
    """`<base>-<yyyymmddhhmmss>-<suffix>` in UTC, the base shortened to fit 63 characters."""
    tail = f"-{now.astimezone(timezone.utc):%Y%m%d%H%M%S}-{suffix}"
    head = base[: MAX_RUN_NAME - len(tail)].rstrip("-.")
    return f"{head or 'flowrun'}{tail}"


def base_of_entrypoint(entrypoint: str) -> str:
    """The name part for an ad-hoc run: the flow function's name as a DNS label."""
    attribute = entrypoint.rpartition(":")[2].rpartition(".")[2]
    return _NOT_NAME.sub("-", attribute.lower().replace("_", "-")).strip("-") or "flowrun"
