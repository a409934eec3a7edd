"""Approval example: a release that pauses for a typed approval before it publishes.

Start it with `kubectl apply -f examples/approval/`. It builds, then pauses: the FlowRun goes
Paused and `status.pause.inputSchema` shows the JSON schema of `Approval`. Resume it with
`flowpod resume approval-example -i approved=true -i approver=ada` (or set
`spec.resume: {input: {approved: true, approver: ada}}` with kubectl or GitOps). The operator
checks the input against the schema first: `-i approved=maybe` is refused, naming the field,
and the run stays Paused. Checked end to end by tests/delivery/test_examples.py.
"""

from __future__ import annotations

from pydantic import BaseModel

from flowpod import flow, get_run_logger, pause_flow_run, task


class Approval(BaseModel):
    approved: bool
    approver: str
    comment: str = ""


@task
def build(version: str) -> str:
    return f"release-{version}.tar.gz"


@task
def publish(artifact: str) -> str:
    return f"https://downloads.example.com/{artifact}"


@flow
def release(version: str = "1.0.0") -> dict:
    """Build, wait up to an hour for someone to approve, then publish (or not)."""
    artifact = build(version)
    approval = pause_flow_run(wait_for_input=Approval, timeout=3600)
    get_run_logger().info("%s by %s", "approved" if approval.approved else "rejected",
                          approval.approver)
    url = publish(artifact) if approval.approved else None
    return {"artifact": artifact, "approver": approval.approver, "published": url}
