"""OOM retry with more memory, on the real plane: the test node enforces memory limits (a
cgroup), the operator and the engine run for real. A flow allocating 120 MiB (about 160 MiB
at its peak, with the engine) is OOMKilled under 100Mi and completes on the next attempt
with 200Mi (spec.retryPolicy.memoryMultiplier 2); with a cap of 150Mi one allocating 140 MiB
is OOMKilled there too and is not retried again. The API server refuses a bad retryPolicy
with the field and the fix.

Both runs start at once (module fixture `runs`); each test waits for its own.
"""

from __future__ import annotations

import pytest

import operator_harness as harness
from flowpod import contract
from flowpod_devcluster import waiting

CASES = "tests/operator/flows/operator_cases.py"
OOM = ("OOMKilled: the flow used more memory than its limit of {limit}; raise "
       "resources.limits.memory in the Deployment's podTemplate or use less memory")


def _memory_deployment(api, ns: str, name: str, cap: str) -> None:
    api.create_deployment(ns, name, entrypoint=f"{CASES}:hog_memory", retries=2,
                          podTemplate={"resources": {"limits": {"memory": "100Mi"}}},
                          retryPolicy={"memoryMultiplier": 2, "maxMemory": cap})


@pytest.fixture(scope="module")
def runs(api, flow_namespace, operator_proc) -> None:
    ns = flow_namespace
    _memory_deployment(api, ns, "grows", cap="1Gi")
    _memory_deployment(api, ns, "capped", cap="150Mi")
    api.create_flowrun(ns, "raised", deploymentName="grows", parameters={"megabytes": 120})
    api.create_flowrun(ns, "at-cap", deploymentName="capped", parameters={"megabytes": 140})


@pytest.fixture
def final(api, flow_namespace, operator_proc, runs):
    def wait(name: str) -> dict:
        return api.wait_final(flow_namespace, name, timeout=180,
                              explain=lambda: operator_proc.log_tail(needle=f'"{name}"'))
    return wait


def _job_memory(api, ns: str, run: str, attempt: int) -> str:
    (job,) = [j for j in api.jobs(ns, f"{contract.LABEL_FLOW_RUN}={run}")
              if j["metadata"]["name"] == f"{run}-{attempt}"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container["resources"]["limits"]["memory"]


def _event(api, ns: str, run: str, reason: str) -> dict:
    (event,) = waiting.wait_for(f"the {reason} Event of {run}", lambda: [
        e for e in api.events(ns, run) if e["reason"] == reason], bool, timeout=30)
    return event


def test_an_oom_killed_attempt_is_retried_with_twice_the_memory(final, api, flow_namespace):
    flowrun = final("raised")
    status = flowrun["status"]
    assert status["state"]["type"] == "COMPLETED", status
    assert status["attempt"] == 2 and status["result"] == {"value": 120}
    raise_text = (OOM.format(limit="100Mi") + "; retrying as attempt 2 of 3, which gets "
                  "memory limit 200Mi (was 100Mi, OOMKilled; spec.retryPolicy."
                  "memoryMultiplier 2, cap 1Gi)")
    (retry,) = [s for s in status["stateHistory"] if s["name"] == "AwaitingRetry"]
    assert retry["message"] == raise_text
    assert status["memory"] == [{"attempt": 1, "limit": "100Mi"},
                                {"attempt": 2, "limit": "200Mi"}]
    assert _job_memory(api, flow_namespace, "raised", 1) == "100Mi"
    assert _job_memory(api, flow_namespace, "raised", 2) == "200Mi"
    assert _event(api, flow_namespace, "raised", "AwaitingRetry")["message"] == raise_text


def test_an_attempt_oom_killed_at_the_cap_is_not_retried(final, api, flow_namespace):
    flowrun = final("at-cap")
    status = flowrun["status"]
    assert status["state"]["type"] == "CRASHED", status
    text = (OOM.format(limit="150Mi") + "; not retried: its memory limit 150Mi is already at "
            "the cap, spec.retryPolicy.maxMemory 150Mi; raise the cap or use less memory")
    assert status["state"]["message"] == text
    assert status["attempt"] == 2 and status["reason"] == "OOMKilled"
    assert status["memory"] == [{"attempt": 1, "limit": "100Mi"},
                                {"attempt": 2, "limit": "150Mi"}]
    assert _event(api, flow_namespace, "at-cap", "Crashed")["message"].startswith(text)


@pytest.mark.parametrize("policy, message", [
    ({"memoryMultiplier": 1, "maxMemory": "1Gi"},
     "spec.retryPolicy.memoryMultiplier must be a number above 1"),
    ({"memoryMultiplier": 2, "maxMemory": "lots"},
     "spec.retryPolicy.maxMemory must be a positive Kubernetes quantity, e.g. 2Gi or 512Mi"),
    ({"memoryMultiplier": 2, "maxMemory": "-1Gi"},
     "spec.retryPolicy.maxMemory must be a positive Kubernetes quantity"),
    ({"maxMemory": "1Gi"},
     "spec.retryPolicy.memoryMultiplier and spec.retryPolicy.maxMemory go together"),
])
def test_the_api_server_refuses_a_bad_retry_policy(api, flow_namespace, policy, message):
    body = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
            "metadata": {"name": "bad-policy"},
            "spec": {"entrypoint": f"{CASES}:hello", "image": harness.IMAGE,
                     "retryPolicy": policy}}
    response = api.request("POST", contract.deployment_path(flow_namespace), body)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
