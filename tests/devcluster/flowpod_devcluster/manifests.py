"""Small builders for the Pod and Job manifests the harness tests create.

Used by the test node's suites (tests/cluster/test_*.py). Everything runs the image
python:3.11, which the test node's default image map resolves to the repository's virtualenv.
"""

from __future__ import annotations

import textwrap
from typing import Any

__all__ = ["PYTHON_IMAGE", "container", "job", "pod", "python"]

PYTHON_IMAGE = "python:3.11"


def python(code: str) -> list[str]:
    """A command running ``code`` (dedented) with the image's python."""
    return ["python", "-c", textwrap.dedent(code)]


def container(command: list[str], *, name: str = "main", **extra: Any) -> dict:
    return {"name": name, "image": PYTHON_IMAGE, "command": command, **extra}


def pod(name: str, command: list[str], *, restart_policy: str = "Never",
        container_extra: dict | None = None, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart_policy,
                     "containers": [container(command, **(container_extra or {}))], **spec}}


def job(name: str, command: list[str], *, backoff_limit: int = 0, **pod_spec: Any) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
                "restartPolicy": "Never", "containers": [container(command)], **pod_spec}}}}
