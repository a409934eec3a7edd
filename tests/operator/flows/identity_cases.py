"""Flows for tests/operator/test_operator_identity.py, each in a pod on the test node: one
waits paused (a live run to be trespassed on), one uses its pod's own credentials to write
another run's status and to start a run owned by another run -- what a buggy or hostile flow
could try. It reports what the API server answered instead of failing, so the test can read
the refusal from its result."""

from __future__ import annotations

from typing import Any

import httpx

from flowpod import contract, flow, pause_flow_run
from flowpod.engine import _kubeapi


@flow
def waits_for_word(timeout: int = 300) -> str:
    return pause_flow_run(wait_for_input=str, timeout=timeout)


def _answer(response: httpx.Response) -> dict[str, Any]:
    return {"code": response.status_code, "message": response.json().get("message", "")}


@flow
def trespass(namespace: str, victim: str, victim_uid: str) -> dict[str, Any]:
    """Write the victim's status, then create a FlowRun owned by the victim; also say who
    the API server takes this pod's token for."""
    connection = _kubeapi.Connection.in_cluster()
    headers = {"Authorization": f"Bearer {connection.token()}"}
    with httpx.Client(base_url=connection.base_url, verify=connection.verify,
                      headers=headers, timeout=30) as http:
        whoami = http.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        status = http.patch(f"{contract.flowrun_path(namespace, victim)}/status",
                            json={"status": {"flowRunName": "hijacked"}},
                            headers={"Content-Type": contract.MERGE_PATCH})
        owner = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                 "name": victim, "uid": victim_uid}
        child = http.post(contract.flowrun_path(namespace), json={
            "apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": {"name": f"{victim}-planted", "ownerReferences": [owner],
                         "labels": {contract.LABEL_PARENT_FLOW_RUN: victim}},
            "spec": {"entrypoint": "tests/operator/flows/identity_cases.py:waits_for_word",
                     "image": "flowpod/engine:dev"}})
    return {"status": _answer(status), "child": _answer(child),
            "user": whoami.json()["status"]["userInfo"]}
