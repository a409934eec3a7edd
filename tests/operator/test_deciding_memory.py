"""The decision on memory retries (a Deployment's spec.retryPolicy): an attempt that ended
OOMKilled is retried with its memory limit and request multiplied, up to the cap; one
OOMKilled at the cap is not retried; every attempt's memory goes into status.memory. Pure:
dicts in, actions out, a fixed clock."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flowpod import contract
from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import memory
from flowpod_operator._decisions import observations as obs
from flowpod_operator.crds.retries import RetryPolicy

OOM = ("OOMKilled: the flow used more memory than its limit of {limit}; raise "
       "resources.limits.memory in the Deployment's podTemplate or use less memory")


def _deployment(k8s, limit="100Mi", request="50Mi", multiplier=2, cap="1Gi", retries=2):
    resources = {"limits": {"memory": limit, "cpu": "1"}}
    if request:
        resources["requests"] = {"memory": request}
    deployment = k8s.deployment(retries=retries, template={"resources": resources})
    if multiplier is not None:
        deployment["spec"]["retryPolicy"] = {"memoryMultiplier": multiplier, "maxMemory": cap}
    return deployment


def _job(k8s, run, deployment, attempt=1, resources=None, **status):
    settings = obs.settings_from_deployment(deployment)
    job = manifests.build_job(run, deployment, attempt, settings=settings, resources=resources)
    job["metadata"].update(uid=f"uid-job-{attempt}", creationTimestamp=k8s.ts(-5))
    job["status"] = status
    return job


def _oom_pod(k8s, run, job, attempt=1, code=137, reason="OOMKilled"):
    pod = k8s.pod(run, attempt, exit_code=code, term_reason=reason)
    pod["spec"] = job["spec"]["template"]["spec"]  # the pod has the Job's resources
    return pod


def _decide(k8s, run, deployment, jobs=(), pods=(), gone=(), fresh=False):
    return _deciding.decide(obs.Observation(run, deployment, jobs=list(jobs), pods=list(pods),
                                            gone_pods=list(gone), fresh=fresh), k8s.now)


def _memory_of(job) -> dict:
    return memory.container_resources(job)


def test_the_first_attempt_records_its_memory_and_carries_the_policy(k8s):
    deployment = _deployment(k8s)
    create, write = _decide(k8s, k8s.flowrun(), deployment)
    assert _memory_of(create.manifest) == {"limits": {"memory": "100Mi", "cpu": "1"},
                                           "requests": {"memory": "50Mi"}}
    notes = create.manifest["metadata"]["annotations"]
    assert notes[contract.ANNOTATION_MEMORY_MULTIPLIER] == "2.0"
    assert notes[contract.ANNOTATION_MAX_MEMORY] == "1Gi"
    assert obs.settings_from_job(create.manifest) == obs.settings_from_deployment(deployment)
    assert write.states[-1].message == "Job run-1 created (attempt 1 of 3)"
    assert write.fields["memory"] == [{"attempt": 1, "limit": "100Mi", "request": "50Mi"}]


def test_an_oom_killed_attempt_awaits_a_retry_that_says_what_it_gets(k8s):
    deployment = _deployment(k8s)
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    job = _job(k8s, run, deployment)
    actions = _decide(k8s, run, deployment, jobs=[job], pods=[_oom_pod(k8s, run, job)])
    (write,) = [a for a in actions if isinstance(a, act.WriteStatus)]
    assert [s.name for s in write.states] == ["AwaitingRetry"]
    assert write.states[0].message == (
        OOM.format(limit="100Mi") + "; retrying as attempt 2 of 3, which gets memory limit "
        "200Mi (was 100Mi, OOMKilled; spec.retryPolicy.memoryMultiplier 2, cap 1Gi)")
    assert write.fields["reason"] == "OOMKilled"


def _awaiting(k8s, attempt=1, memory_records=None, reason="OOMKilled"):
    records = memory_records or [{"attempt": 1, "limit": "100Mi", "request": "50Mi"}]
    return k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=attempt,
                       reason=reason, memory=records)


def test_the_next_attempt_gets_the_raised_limit_and_request(k8s):
    deployment = _deployment(k8s)
    run = _awaiting(k8s)
    job = _job(k8s, run, deployment)
    create, write = _decide(k8s, run, deployment, jobs=[job], gone=[_oom_pod(k8s, run, job)])
    assert create.name == "run-2"
    assert _memory_of(create.manifest) == {"limits": {"memory": "200Mi", "cpu": "1"},
                                           "requests": {"memory": "100Mi"}}
    assert write.states[0].message == (
        "Job run-2 created (attempt 2 of 3, which gets memory limit 200Mi (was 100Mi, "
        "OOMKilled; spec.retryPolicy.memoryMultiplier 2, cap 1Gi))")
    assert write.fields["memory"] == [{"attempt": 1, "limit": "100Mi", "request": "50Mi"},
                                      {"attempt": 2, "limit": "200Mi", "request": "100Mi"}]
    assert write.fields["reason"] is None  # the new attempt's own, once it ends


def test_the_raise_follows_the_recorded_reason_when_the_pod_is_gone_unseen(k8s):
    # An operator restarted after writing AwaitingRetry no longer knows the deleted pod.
    deployment = _deployment(k8s)
    run = _awaiting(k8s)
    job = _job(k8s, run, deployment, failed=1)
    create, _ = _decide(k8s, run, deployment, jobs=[job], fresh=True)
    assert _memory_of(create.manifest)["limits"]["memory"] == "200Mi"


def test_the_raise_stops_at_the_cap(k8s):
    deployment = _deployment(k8s, cap="150Mi")
    run = _awaiting(k8s)
    job = _job(k8s, run, deployment)
    create, write = _decide(k8s, run, deployment, jobs=[job], gone=[_oom_pod(k8s, run, job)])
    assert _memory_of(create.manifest) == {"limits": {"memory": "150Mi", "cpu": "1"},
                                           "requests": {"memory": "100Mi"}}
    assert write.states[0].message.endswith(
        "which gets memory limit 150Mi (was 100Mi, OOMKilled; spec.retryPolicy."
        "memoryMultiplier 2, cap 150Mi))")


@pytest.mark.parametrize("template_limit, where", [("150Mi", "at"), ("2Gi", "over")])
def test_an_attempt_oom_killed_at_the_cap_is_not_retried(k8s, template_limit, where):
    deployment = _deployment(k8s, limit=template_limit, request=None, cap="150Mi")
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    job = _job(k8s, run, deployment)
    actions = _decide(k8s, run, deployment, jobs=[job], pods=[_oom_pod(k8s, run, job)])
    (write,) = [a for a in actions if isinstance(a, act.WriteStatus)]
    assert [s.name for s in write.states] == ["Crashed"]
    assert write.states[0].message == (
        OOM.format(limit=template_limit) + f"; not retried: its memory limit {template_limit} "
        f"is already {where} the cap, spec.retryPolicy.maxMemory 150Mi; raise the cap or use "
        "less memory")
    assert write.fields["reason"] == "OOMKilled" and write.log_tail_of == "run-1-abcde"
    assert not any(isinstance(a, act.CreateJob) for a in actions)


def test_the_last_attempt_oom_killed_below_the_cap_crashes_as_usual(k8s):
    deployment = _deployment(k8s, retries=1)
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=2)
    raised = {"limits": {"memory": "200Mi"}}
    job = _job(k8s, run, deployment, attempt=2, resources=raised)
    (write,) = [a for a in _decide(k8s, run, deployment, jobs=[job],
                                   pods=[_oom_pod(k8s, run, job, attempt=2)])
                if isinstance(a, act.WriteStatus)]
    assert write.states[0].name == "Crashed"
    assert write.states[0].message == OOM.format(limit="200Mi")


def test_another_crash_keeps_the_memory_the_attempt_had(k8s):
    deployment = _deployment(k8s)
    run = _awaiting(k8s, attempt=2, reason="Error")
    raised = {"limits": {"memory": "200Mi", "cpu": "1"}, "requests": {"memory": "100Mi"}}
    job = _job(k8s, run, deployment, attempt=2, resources=raised)
    create, write = _decide(k8s, run, deployment, jobs=[job],
                            gone=[_oom_pod(k8s, run, job, 2, code=1, reason="Error")])
    assert create.name == "run-3" and _memory_of(create.manifest) == raised
    assert write.states[0].message == "Job run-3 created (attempt 3 of 3)"


def test_without_a_retry_policy_an_oom_kill_is_retried_with_the_same_memory(k8s):
    deployment = _deployment(k8s, multiplier=None)
    run = _awaiting(k8s)
    job = _job(k8s, run, deployment)
    assert contract.ANNOTATION_MEMORY_MULTIPLIER not in job["metadata"]["annotations"]
    create, write = _decide(k8s, run, deployment, jobs=[job], gone=[_oom_pod(k8s, run, job)])
    assert _memory_of(create.manifest)["limits"]["memory"] == "100Mi"
    assert write.states[0].message == "Job run-2 created (attempt 2 of 3)"


@pytest.mark.parametrize("limit, requested, multiplier, cap, new_limit, new_request", [
    ("100M", "10M", 1.5, "1G", "150M", "15M"),        # decimal units stay decimal
    ("1001", None, 1.5, "1Gi", "1502", None),          # whole bytes, rounded up
    ("768Mi", "768Mi", 2, "1Gi", "1Gi", "1Gi"),        # the request never passes the limit
    (104857600, None, 3, "1Gi", "300Mi", None),        # a plain number of bytes
    ("0.5Gi", None, 2, "2Gi", "1Gi", None),
])
def test_quantities_are_raised_exactly(limit, requested, multiplier, cap, new_limit,
                                       new_request):
    resources = {"limits": {"memory": limit}}
    if requested:
        resources["requests"] = {"memory": requested}
    job = {"spec": {"template": {"spec": {"containers": [
        {"name": contract.CONTAINER_NAME, "resources": resources}]}}}}
    settings = obs.RunSettings(retries=1, memory_multiplier=multiplier, max_memory=cap)
    plan = memory.plan(job, settings, oom_killed=True)
    assert plan.resources["limits"]["memory"] == new_limit
    assert (plan.resources.get("requests") or {}).get("memory") == new_request
    assert not plan.at_cap
    assert resources["limits"]["memory"] == limit  # the previous Job is left as it was


def test_a_resumed_attempt_keeps_the_previous_attempts_memory():
    raised = {"limits": {"memory": "200Mi"}}
    job = {"spec": {"template": {"spec": {"containers": [
        {"name": contract.CONTAINER_NAME, "resources": raised}]}}}}
    settings = obs.RunSettings(memory_multiplier=2, max_memory="1Gi")
    assert memory.plan(job, settings, oom_killed=False) == memory.Plan(raised)
    assert memory.plan(job, obs.RunSettings(), oom_killed=True) == memory.Plan()


@pytest.mark.parametrize("policy, message", [
    ({"memoryMultiplier": 1, "maxMemory": "1Gi"},
     "spec.retryPolicy.memoryMultiplier must be a number above 1"),
    ({"memoryMultiplier": 2, "maxMemory": "lots"},
     "spec.retryPolicy.maxMemory must be a positive Kubernetes quantity, e.g. 2Gi or 512Mi; "
     "got 'lots'"),
    ({"memoryMultiplier": 2, "maxMemory": "0"},
     "spec.retryPolicy.maxMemory must be a positive Kubernetes quantity"),
    ({"memoryMultiplier": 2},
     "spec.retryPolicy.memoryMultiplier and spec.retryPolicy.maxMemory go together"),
])
def test_the_model_refuses_a_bad_policy_naming_the_field(policy, message):
    with pytest.raises(ValidationError, match=message.replace(".", r"\.").replace("(", r"\(")):
        RetryPolicy.model_validate(policy)
    assert RetryPolicy.model_validate({"memoryMultiplier": 1.5, "maxMemory": "2Gi"})


def test_memory_history_replaces_an_attempts_entry():
    status = {"memory": [{"attempt": 1, "limit": "1Gi"}, {"attempt": 2, "limit": "1Mi"}]}
    assert memory.history(status, {"attempt": 2, "limit": "2Gi"}) == [
        {"attempt": 1, "limit": "1Gi"}, {"attempt": 2, "limit": "2Gi"}]


def test_an_oom_kill_between_flow_retries_raises_the_memory_too(k8s):
    # The engine wrote AwaitingRetry (a flow retry) and the pod was then OOMKilled: nothing
    # recorded the reason yet, the pod says it.
    deployment = _deployment(k8s)
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1)
    job = _job(k8s, run, deployment)
    create, _ = _decide(k8s, run, deployment, jobs=[job], gone=[_oom_pod(k8s, run, job)])
    assert _memory_of(create.manifest)["limits"]["memory"] == "200Mi"
