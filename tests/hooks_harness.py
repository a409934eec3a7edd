"""Helpers of the hooks-after-a-hard-kill tests (tests/operator/test_operator_hooks*.py):
the flows' hostPath volume and the file their hooks append to, the hook Jobs of a run, and
waiting for the hooks' outcome and Events."""

from __future__ import annotations

import time
from pathlib import Path

from flowpod import contract

CASES = "tests/operator/flows/hook_cases.py"


def hook_volume(out: Path) -> dict:
    """The podTemplate part that mounts `out` at /hooks-out in the flow's (and the hook
    Job's) container."""
    return {"volumes": [{"name": "hooks-out", "hostPath": {"path": str(out),
                                                           "type": "Directory"}}],
            "volumeMounts": [{"name": "hooks-out", "mountPath": "/hooks-out"}]}


def lines(out: Path, run: str) -> list[str]:
    path = out / f"{run}.log"
    return path.read_text().splitlines() if path.exists() else []


def hook_jobs(api, ns: str, run: str) -> list[dict]:
    return api.jobs(ns, f"{contract.LABEL_FLOW_RUN}={run},{contract.LABEL_HOOKS}")


def wait_hooks_done(api, ns: str, run: str, explain, timeout: float = 60) -> dict:
    return api.wait_flowrun(
        ns, run, lambda f: ((f.get("status") or {}).get("hooks") or {}).get("outcome")
        in contract.HOOKS_DONE, what="the hooks' outcome", timeout=timeout, explain=explain)


def wait_events(api, ns: str, run: str, reasons: set[str], timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = api.events(ns, run)
        if reasons <= {e["reason"] for e in events} or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
