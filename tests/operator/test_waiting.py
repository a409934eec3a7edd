"""Why a run still waits: the table from what Kubernetes shows to the Pending message, and
the decision that writes it once per problem (flowpod_operator._decisions.waiting)."""

from __future__ import annotations

import pytest

from flowpod import states
from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import waiting

IMAGE = "flowpod/engine:dev"  # what the k8s builders put in the flow container
MISSING_ACCOUNT = ('Error creating: pods "run-1-" is forbidden: error looking up service '
                   'account ns/nobody: serviceaccount "nobody" not found')


def _unscheduled(k8s, run, message="0/1 nodes are available: 1 node(s) didn't match "
                                   "Pod's node affinity/selector."):
    pod = k8s.pod(run, running=False, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": message}])
    del pod["spec"]["nodeName"]
    return pod


def _event(reason, message):
    return {"reason": reason, "message": message, "type": "Warning",
            "lastTimestamp": "2026-03-01T12:00:00Z"}


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_an_image_problem_names_the_image(k8s, reason):
    pod = k8s.pod(waiting=reason, waiting_message='pull access denied for "x"')
    found = waiting.from_pod(pod)
    assert found is not None and found.reason == reason
    assert found.message.startswith(f'{reason}: the image "{IMAGE}" of the flow container '
                                    'cannot be pulled (pull access denied for "x"); check ')


def test_a_container_config_problem_points_at_the_pod_template(k8s):
    pod = k8s.pod(waiting="CreateContainerConfigError",
                  waiting_message='secret "db" not found')
    found = waiting.from_pod(pod)
    assert found == waiting.Waiting(
        "CreateContainerConfigError", "CreateContainerConfigError: the flow container of pod "
        "run-1-abcde cannot be created (secret \"db\" not found); check the Deployment's "
        "podTemplate (env from Secrets or ConfigMaps, volumes)")


def test_an_unschedulable_pod_quotes_the_scheduler(k8s):
    found = waiting.from_pod(_unscheduled(k8s, k8s.flowrun()))
    assert found == waiting.Waiting(
        "Unschedulable", "Unschedulable: no node can run pod run-1-abcde yet (0/1 nodes are "
        "available: 1 node(s) didn't match Pod's node affinity/selector.)")


def test_ordinary_steps_are_no_problem(k8s):
    assert waiting.from_pod(k8s.pod(waiting="ContainerCreating")) is None
    assert waiting.from_pod(k8s.pod(running=False)) is None


def test_a_missing_service_account_is_named(k8s):
    job = k8s.job()
    found = waiting.from_job_events(job, [_event("SuccessfulCreate", "x"),
                                          _event("FailedCreate", MISSING_ACCOUNT)])
    assert found is not None and found.reason == "ServiceAccountNotFound"
    assert found.message.startswith('ServiceAccountNotFound: the ServiceAccount "nobody" does '
                                    "not exist in namespace ns, so Job run-1 cannot create its "
                                    "pod; create it")


def test_another_refused_pod_quotes_the_api_server(k8s):
    found = waiting.from_job_events(k8s.job(), [_event("FailedCreate", "exceeded quota")])
    assert found == waiting.Waiting("FailedCreate", "FailedCreate: Job run-1 cannot create "
                                                    "its pod (exceeded quota)")
    assert waiting.from_job_events(k8s.job(), []) is None


def test_a_problem_is_written_once_and_its_clearing_once():
    pull = waiting.Waiting("ErrImagePull", "ErrImagePull: the image ...")
    backoff = waiting.Waiting("ImagePullBackOff", "ImagePullBackOff: the image ...")
    fresh = "Job run-1 created (attempt 1 of 1)"
    assert waiting.new_message(fresh, pull, "p") == pull.message
    assert waiting.new_message(pull.message, pull, "p") is None
    assert waiting.new_message(pull.message, backoff, "p") is None  # one problem, retried
    other = waiting.Waiting("Unschedulable", "Unschedulable: no node ...")
    assert waiting.new_message(pull.message, other, "p") == other.message
    assert waiting.new_message(pull.message, None, "p") == ("Pod p is starting (ErrImagePull "
                                                           "is resolved)")
    assert waiting.new_message(fresh, None, "p") is None
    assert waiting.reason_of(fresh) is None and waiting.reason_of("Note: x") is None


def _decide(k8s, run, *, pods=(), job_events=None, job=None):
    return _deciding.decide(obs.Observation(
        run, k8s.deployment(), jobs=[job or k8s.job(run)], pods=list(pods),
        job_events=job_events), k8s.now)


def test_decide_writes_why_a_pod_waits_with_its_name(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    actions = _decide(k8s, run, pods=[_unscheduled(k8s, run)])
    assert isinstance(actions[0], act.Requeue)
    write = actions[1]
    (step,) = write.states
    assert step.type is states.StateType.PENDING and step.message.startswith("Unschedulable: ")
    assert write.fields == {"podName": "run-1-abcde"}
    # A run the engine already moved on is not rewritten.
    running = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    assert _decide(k8s, running, pods=[_unscheduled(k8s, running)]) == [actions[0]]


def test_decide_reads_a_podless_jobs_events(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    job = k8s.job(run, created=-3)
    assert _decide(k8s, run, job=job) == [act.Refresh(job_events="run-1")]
    actions = _decide(k8s, run, job=job,
                      job_events=[_event("FailedCreate", MISSING_ACCOUNT)])
    assert actions[0] == act.Requeue(5.0)
    (step,) = actions[1].states
    assert step.message.startswith("ServiceAccountNotFound: ")


def test_a_suspended_job_is_not_asked_why(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    job = k8s.job(run, created=-10, pending=60)
    job["spec"]["suspend"] = True  # held by a queue (Kueue): no pod on purpose
    assert _decide(k8s, run, job=job) == [act.Requeue(50.0)]
