"""Per-run identity on the real plane: a flow-run pod may write only its own FlowRun.

The ValidatingAdmissionPolicy in examples/flow-run-rbac.yaml (the chart ships the same) is
installed as users get it: `flow_namespace` applies that very file. Three views:
- the rule itself, table-driven, through impersonation with the pod-name extra a pod-bound
  token carries (no pods: every case is one request the API server decides);
- real pods: a flow that uses its own token to write another live run's status and to plant
  a run owned by that run is refused with the policy's message, and both runs end as they
  should (its own writes, and every other suite that runs the engine in pods, still work);
- what the flow-run ServiceAccount may do at all (`kubectl auth can-i`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster.waiting import wait_for
from flowpod_operator._decisions import kill_hooks, manifests

FLOWS = "tests/operator/flows/identity_cases.py"
# What the API server adds to the user info of a token bound to a pod.
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
REFUSED = "may write only its own FlowRun, not FlowRun"
NOT_A_CHILD = "may create FlowRuns only as children of its own run"
# Names the API server generates stop at 63 characters: 58 of `<job>-`, then 5 random ones.
LONG = "nightly-warehouse-refresh-for-the-emea-region-" + "x" * 14  # 60 characters
HASHED = LONG + "-and-more"                                       # its Job name is hashed


def _pod_of(job: str) -> str:
    return (job + "-")[:58] + "b2c4d"


def _as(namespace: str, pod: str | None, account: str = contract.DEFAULT_SERVICE_ACCOUNT
        ) -> dict[str, str]:
    headers = {"Impersonate-User": f"system:serviceaccount:{namespace}:{account}"}
    if pod is not None:
        headers[f"Impersonate-Extra-{POD_NAME_EXTRA.replace('/', '%2f')}"] = pod
    return headers


def _patch(api: harness.Api, namespace: str, run: str, pod: str | None, *,
           subresource: str = "/status", **who: str) -> httpx.Response:
    body = ({"status": {"flowRunName": f"written-by-{pod}"}} if subresource
            else {"metadata": {"labels": {"touched": "yes"}}})
    return api.http.patch(f"{contract.flowrun_path(namespace, run)}{subresource}",
                          content=json.dumps(body),
                          headers={"Content-Type": contract.MERGE_PATCH,
                                   **_as(namespace, pod, **who)})


def _create_child(api: harness.Api, namespace: str, pod: str, name: str,
                  owners: list[dict[str, Any]], parent_label: str | None) -> httpx.Response:
    meta: dict[str, Any] = {"name": name, "ownerReferences": owners}
    if parent_label is not None:
        meta["labels"] = {contract.LABEL_PARENT_FLOW_RUN: parent_label}
    body = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": meta, "spec": {"entrypoint": f"{FLOWS}:waits_for_word",
                                       "image": harness.IMAGE,
                                       "scheduledTime": "2099-01-01T00:00:00Z"}}
    return api.http.post(contract.flowrun_path(namespace), content=json.dumps(body),
                         headers={"Content-Type": "application/json", **_as(namespace, pod)})


@pytest.fixture(scope="module")
def runs(api, flow_namespace) -> dict[str, dict[str, Any]]:
    """FlowRuns that never start (scheduled far ahead): the policy looks only at names."""
    names = ["a", "a-1", "a.b", LONG, LONG[:58] + "yz", HASHED]
    return {name: api.create_flowrun(flow_namespace, name, entrypoint=f"{FLOWS}:waits_for_word",
                                     image=harness.IMAGE, scheduledTime="2099-01-01T00:00:00Z")
            for name in names}


@pytest.mark.parametrize("run, pod, allowed", [
    ("a", "a-1-x2z4q", True),
    ("a", "a-12-x2z4q", True),
    ("a", "a-hooks-x2z4q", True),
    ("a-1", "a-1-x2z4q", False),      # the pod of run a's first attempt
    ("a", "a-1-2-x2z4q", False),      # a pod of run a-1
    ("a-1", "a-1-2-x2z4q", True),
    ("a.b", "a.b-1-x2z4q", True),
    ("a.b", "axb-1-x2z4q", False),    # a dot is a dot, not "any character"
    ("a", "a-1-x2z4q7", False),
    ("a", "a-one-x2z4q", False),
    ("a", "b-1-x2z4q", False),
])
def test_a_pod_writes_the_status_of_the_run_its_job_is_named_after(
        api, flow_namespace, runs, run: str, pod: str, allowed: bool) -> None:
    response = _patch(api, flow_namespace, run, pod)
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403, response.text
        assert f"pod {pod} {REFUSED} {run} (flowruns/status)" in response.json()["message"]


def test_the_object_itself_follows_the_same_rule(api, flow_namespace, runs) -> None:
    refused = _patch(api, flow_namespace, "a", "a-1-2-x2z4q", subresource="")
    assert refused.status_code == 403, refused.text
    assert f"pod a-1-2-x2z4q {REFUSED} a (flowruns)" in refused.json()["message"]
    assert _patch(api, flow_namespace, "a", "a-1-x2z4q", subresource="").status_code == 200


def test_a_token_not_bound_to_a_pod_is_refused(api, flow_namespace, runs) -> None:
    response = _patch(api, flow_namespace, "a", None)
    assert response.status_code == 403, response.text
    assert "may write FlowRuns only from a flow-run pod" in response.json()["message"]
    assert "this token names no pod" in response.json()["message"]


def test_other_accounts_are_not_checked(cluster, api, flow_namespace, runs) -> None:
    # Another ServiceAccount with the same rights (as the operator's has): the policy
    # leaves it alone, whatever pod its token names.
    cluster.kubectl("create", "serviceaccount", "some-controller", "-n", flow_namespace)
    cluster.kubectl("create", "rolebinding", "some-controller", "-n", flow_namespace,
                    f"--role={contract.DEFAULT_SERVICE_ACCOUNT}",
                    f"--serviceaccount={flow_namespace}:some-controller")
    response = wait_for("the RoleBinding to take effect",
                        lambda: _patch(api, flow_namespace, "a", "elsewhere-1-x2z4q",
                                       account="some-controller"),
                        lambda r: r.status_code != 403, timeout=30)
    assert response.status_code == 200, response.text
    # And an admin writes any run's status.
    admin = api.request("PATCH", f"{contract.flowrun_path(flow_namespace, 'a')}/status",
                        {"status": {"flowRunName": "by-admin"}}, contract.MERGE_PATCH)
    assert admin.status_code == 200, admin.text


def _record(api: harness.Api, namespace: str, run: str, **status: Any) -> None:
    """Write what the operator records about an attempt, as the operator would."""
    response = api.request("PATCH", f"{contract.flowrun_path(namespace, run)}/status",
                           {"status": {"attempt": 1, **status}}, contract.MERGE_PATCH)
    assert response.status_code == 200, response.text


def test_a_cut_pod_name_is_matched_against_the_pod_the_operator_recorded(
        api, flow_namespace, runs) -> None:
    ns = flow_namespace
    lookalike = LONG[:58] + "yz"  # the same first 58 characters
    job = manifests.job_name(LONG, 1)
    assert job == f"{LONG}-1"  # not shortened, but its pods' names are cut
    pod, other_pod = _pod_of(job), LONG[:58] + "q9r8s"
    assert pod == _pod_of(manifests.job_name(lookalike, 1))  # the name cannot tell them apart
    assert _patch(api, ns, LONG, pod).status_code == 403
    _record(api, ns, LONG, jobName=job)
    refused = _patch(api, ns, LONG, pod)
    assert refused.status_code == 403 and f"pod {pod} {REFUSED} {LONG}" in refused.text
    _record(api, ns, LONG, podName=pod)
    _record(api, ns, lookalike, jobName=manifests.job_name(lookalike, 1), podName=other_pod)
    assert _patch(api, ns, LONG, pod).status_code == 200
    assert _patch(api, ns, lookalike, pod).status_code == 403
    assert _patch(api, ns, lookalike, other_pod).status_code == 200


def test_a_job_name_shortened_with_a_hash_is_matched_once_recorded(
        api, flow_namespace, runs) -> None:
    # Past 63 characters the Job name carries a hash of the run's name, and the first 5
    # characters of the hash are in the pod's name: the recorded Job name tells runs apart.
    ns = flow_namespace
    job, hooks = manifests.job_name(HASHED, 1), kill_hooks.job_name(HASHED)
    assert not job.startswith(HASHED) and not hooks.startswith(HASHED)
    assert _patch(api, ns, HASHED, _pod_of(job)).status_code == 403
    _record(api, ns, HASHED, jobName=job,
            hooks={"runner": contract.HOOKS_RUNNER_JOB, "job": hooks,
                   "outcome": contract.HOOKS_PENDING})
    assert _patch(api, ns, HASHED, _pod_of(job)).status_code == 200
    assert _patch(api, ns, HASHED, _pod_of(hooks)).status_code == 200
    assert _patch(api, ns, HASHED, _pod_of(manifests.job_name(HASHED + "x", 1))
                  ).status_code == 403
    # Once the operator has recorded the pod, only that very pod writes for the attempt.
    _record(api, ns, HASHED, podName=_pod_of(job))
    assert _patch(api, ns, HASHED, _pod_of(job)).status_code == 200
    assert _patch(api, ns, HASHED, _pod_of(job)[:-5] + "q9r8s").status_code == 403
    assert _patch(api, ns, HASHED, _pod_of(hooks)).status_code == 200


def test_a_pod_creates_runs_only_as_children_of_its_own_run(api, flow_namespace, runs) -> None:
    ns = flow_namespace

    def owner(run: str) -> dict[str, Any]:
        return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                "name": run, "uid": runs[run]["metadata"]["uid"]}

    made = _create_child(api, ns, "a-1-x2z4q", "a-child", [owner("a")], "a")
    assert made.status_code == 201, made.text
    for name, owners, label, says in [
        ("not-mine", [owner("a-1")], "a-1", "is owned by a-1"),
        ("orphan", [], None, "has no FlowRun owner"),
        ("mislabelled", [owner("a")], "a-1", "is owned by a"),
        ("two-owners", [owner("a"), owner("a-1")], "a", "is owned by a, a-1"),
    ]:
        refused = _create_child(api, ns, "a-1-x2z4q", name, owners, label)
        assert refused.status_code == 403, (name, refused.text)
        message = refused.json()["message"]
        assert f"pod a-1-x2z4q {NOT_A_CHILD}" in message and f"FlowRun {name} {says}" in message
    # A cut pod name still has to begin with its run's name.
    long_pod = _pod_of(manifests.job_name(LONG, 1))
    made = _create_child(api, ns, long_pod, "long-child", [owner(LONG)], None)
    assert made.status_code == 201, made.text
    refused = _create_child(api, ns, long_pod, "long-not-mine", [owner("a")], "a")
    assert refused.status_code == 403, refused.text


def test_a_flow_cannot_touch_another_run_and_both_runs_end_well(
        cluster, api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace

    def explain() -> str:
        return operator_proc.log_tail()

    victim = api.create_flowrun(ns, "victim", entrypoint=f"{FLOWS}:waits_for_word",
                                image=harness.IMAGE)
    api.wait_flowrun(ns, "victim", lambda f: harness.state_type(f) == "PAUSED",
                     what="Paused", timeout=120, explain=explain)
    api.create_flowrun(ns, "intruder", entrypoint=f"{FLOWS}:trespass", image=harness.IMAGE,
                       parameters={"namespace": ns, "victim": "victim",
                                   "victim_uid": victim["metadata"]["uid"]})
    final = api.wait_final(ns, "intruder", timeout=120, explain=explain)
    assert final["status"]["state"]["type"] == "COMPLETED", final["status"]
    ((pod, uid),) = [(p["metadata"]["name"], p["metadata"]["uid"])
                     for p in api.pods(ns, f"{contract.LABEL_FLOW_RUN}=intruder")]
    answers = final["status"]["result"]["value"]
    # The test node mounts a token bound to the pod, as a kubelet does: the API server
    # names the pod in the user info, which is what the policy reads.
    extra = answers["user"]["extra"]
    assert extra[POD_NAME_EXTRA] == [pod]
    assert extra["authentication.kubernetes.io/pod-uid"] == [uid]
    assert answers["user"]["username"] == (
        f"system:serviceaccount:{ns}:{contract.DEFAULT_SERVICE_ACCOUNT}")
    assert answers["status"]["code"] == 403, answers
    assert f"pod {pod} {REFUSED} victim (flowruns/status)" in answers["status"]["message"]
    assert answers["child"]["code"] == 403, answers
    assert f"pod {pod} {NOT_A_CHILD}" in answers["child"]["message"]
    assert "FlowRun victim-planted is owned by victim" in answers["child"]["message"]
    assert api.flowrun(ns, "victim-planted") is None

    paused = api.flowrun(ns, "victim")
    assert harness.state_type(paused) == "PAUSED"
    assert paused["status"].get("flowRunName") != "hijacked"
    api.request("PATCH", contract.flowrun_path(ns, "victim"),
                {"spec": {"resume": {"input": "go"}}}, contract.MERGE_PATCH).raise_for_status()
    done = api.wait_final(ns, "victim", timeout=120, explain=explain)
    assert done["status"]["state"]["type"] == "COMPLETED", done["status"]
    assert done["status"]["result"]["value"] == "go"


def test_the_flow_run_account_reads_no_secrets_and_starts_no_pods(cluster,
                                                                    flow_namespace) -> None:
    who = f"--as=system:serviceaccount:{flow_namespace}:{contract.DEFAULT_SERVICE_ACCOUNT}"

    def can(*args: str, namespace: str = flow_namespace) -> bool:
        out = cluster.kubectl("auth", "can-i", *args, who, "-n", namespace, check=False)
        return out.stdout.strip() == "yes"

    assert can("patch", "flowruns.flowpod.io", "--subresource=status")
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("create", "pods"),
                           ("create", "jobs.batch"), ("delete", "flowruns.flowpod.io"),
                           ("list", "flowruns.flowpod.io")]:
        assert not can(verb, resource), (verb, resource)
    for verb in ("get", "patch", "create"):
        assert not can(verb, "flowruns.flowpod.io", namespace="default"), verb
    assert not can("patch", "flowruns.flowpod.io", "--subresource=status", namespace="default")
