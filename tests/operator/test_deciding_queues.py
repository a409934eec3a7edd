"""The decision function for batch tooling: the Job's failure and replacement policies, and a
run queued for Kueue by convention (a suspended Job labelled with its queue): waiting for
admission, its timeout, preemption and re-admission, with the exact Pending messages."""

from __future__ import annotations

import pytest

from flowpod import contract

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import observations as obs

WAITING = "waiting for admission by queue batch-q"
PREEMPTED = (f"{WAITING} (preempted: pod run-1-abcde was stopped; the run goes on in a new "
             "pod of Job run-1 when admitted again)")


def _deployment(k8s, **spec):
    deployment = k8s.deployment()
    deployment["spec"].update(spec)
    return deployment


def _queued_job(k8s, run, *, created=-5, suspend=True, admission=None, conditions=(),
                **status):
    deployment = _deployment(k8s, queueName="batch-q")
    job = manifests.build_job(run, deployment, 1, settings=obs.RunSettings(
        admission_timeout_seconds=admission))
    job["metadata"].update(uid="uid-job-1", resourceVersion="50",
                           creationTimestamp=k8s.ts(created))
    job["spec"]["suspend"] = suspend
    job["status"] = {"conditions": list(conditions), **status}
    return job


def _suspended(k8s, status, offset):
    reason = "JobSuspended" if status == "True" else "JobResumed"
    return {"type": "Suspended", "status": status, "reason": reason,
            "lastTransitionTime": k8s.ts(offset)}


def _decide(k8s, run, job, *, pods=(), gone=(), fresh=False, deployment=None):
    return _deciding.decide(obs.Observation(
        run, deployment or _deployment(k8s, queueName="batch-q"), jobs=[job] if job else [],
        pods=list(pods), gone_pods=list(gone), fresh=fresh), k8s.now)


def _pending(actions) -> list[str]:
    writes = [a for a in actions if isinstance(a, act.WriteStatus)]
    return [s.message for w in writes for s in w.states]


# --- the Job's policies ------------------------------------------------------------------

def test_every_job_fails_on_a_disruption_and_never_replaces_a_terminating_pod(k8s):
    spec = manifests.build_job(k8s.flowrun(), k8s.deployment(), 1,
                               settings=obs.DEFAULT_SETTINGS)["spec"]
    assert spec["podReplacementPolicy"] == "Failed"
    assert spec["podFailurePolicy"] == {"rules": [{
        "action": "FailJob",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    # The operator keeps its own retries: one Job per attempt, one pod per Job.
    assert (spec["backoffLimit"], spec["template"]["spec"]["restartPolicy"]) == (0, "Never")
    assert "suspend" not in spec


def test_a_pod_gone_unseen_is_reported_as_the_disruption_the_job_recorded(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    message = ("Pod ns/run-1-abcde has condition DisruptionTarget matching FailJob rule at "
               "index 0")
    job = k8s.job(run, failed=1, conditions=[
        {"type": "Failed", "reason": "PodFailurePolicy", "message": message}])
    gone = k8s.pod(run, deleting=-1)  # its last-seen body lacks the condition
    actions = _deciding.decide(obs.Observation(run, k8s.deployment(), jobs=[job],
                                               gone_pods=[gone], fresh=True), k8s.now)
    write = actions[-1]
    assert [s.name for s in write.states] == ["Crashed"]
    assert write.states[0].message == (
        "Evicted: pod run-1-abcde was evicted, preempted or drained from its node (Kubernetes "
        f"marked it DisruptionTarget), so Job run-1 failed by its podFailurePolicy ({message})")
    assert write.fields["reason"] == "Evicted"


# --- queued runs ---------------------------------------------------------------------------

def test_a_queue_name_makes_a_suspended_job_with_kueues_label(k8s):
    job = manifests.build_job(k8s.flowrun(), _deployment(k8s, queueName="batch-q"), 1,
                              settings=obs.RunSettings(admission_timeout_seconds=600))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][contract.LABEL_KUEUE_QUEUE_NAME] == "batch-q"
    assert job["metadata"]["annotations"][contract.ANNOTATION_ADMISSION_TIMEOUT] == "600"
    # Kueue reads the Job's label; the pod keeps flowpod's own labels only.
    assert contract.LABEL_KUEUE_QUEUE_NAME not in job["spec"]["template"]["metadata"]["labels"]


def test_a_flowruns_queue_name_overrides_its_deployments(k8s):
    run = k8s.flowrun()
    run["spec"]["queueName"] = "urgent"
    job = manifests.build_job(run, _deployment(k8s, queueName="batch-q"), 1,
                              settings=obs.DEFAULT_SETTINGS)
    assert job["metadata"]["labels"][contract.LABEL_KUEUE_QUEUE_NAME] == "urgent"
    adhoc = k8s.flowrun(deployment=None, entrypoint="flows/x.py:hello", image="img:1")
    adhoc["spec"]["queueName"] = "urgent"
    assert manifests.build_job(adhoc, None, 1, settings=obs.DEFAULT_SETTINGS)["spec"][
        "suspend"] is True


def test_a_queued_run_starts_pending_for_admission_in_one_write(k8s):
    actions = _decide(k8s, k8s.flowrun(), None, fresh=True)
    create, write = actions
    assert isinstance(create, act.CreateJob) and create.manifest["spec"]["suspend"] is True
    assert [s.message for s in write.states] == [
        "Scheduled to start now", "Job run-1 created (attempt 1 of 1)", WAITING]


def test_a_suspended_job_keeps_its_run_pending_however_long_it_waits(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message="Job run-1 created"), attempt=1)
    actions = _decide(k8s, run, _queued_job(k8s, run, created=-10))
    assert _pending(actions) == [WAITING]
    assert not any(isinstance(a, act.Requeue) for a in actions)  # no timer: it may wait
    waiting = k8s.flowrun(state=k8s.state("PENDING", message=WAITING), attempt=1)
    assert _decide(k8s, waiting, _queued_job(k8s, waiting, created=-7 * 86400)) == []


def test_admission_timeout_ends_the_run_naming_the_queue(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=WAITING), attempt=1)
    assert _decide(k8s, run, _queued_job(k8s, run, created=-30, admission=60)) == [
        act.Requeue(30.0)]
    actions = _decide(k8s, run, _queued_job(k8s, run, created=-61, admission=60))
    assert actions[0] == act.DeleteJob("run-1")  # Kueue must not admit it afterwards
    (step,) = actions[-1].states
    assert (step.name, step.message) == ("Crashed", (
        "PendingTimeout: Job run-1 was not admitted by queue batch-q within "
        "admissionTimeoutSeconds (60s); check the queue's ClusterQueue quota "
        "(`kubectl get workloads`)"))
    assert actions[-1].fields["reason"] == "PendingTimeout"


def test_admission_timeout_counts_from_the_last_preemption(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1)
    job = _queued_job(k8s, run, created=-500, admission=60,
                      conditions=[_suspended(k8s, "True", -20)])
    gone = k8s.pod(run, created=-400, deleting=-20)
    assert _decide(k8s, run, job, gone=[gone]) == [act.Requeue(40.0)]


def test_a_preemption_seen_before_the_job_controller_synced_starts_a_new_wait(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    job = _queued_job(k8s, run, created=-500, admission=60,
                      conditions=[_suspended(k8s, "False", -300)])
    running = k8s.pod(run, created=-290)
    actions = _decide(k8s, run, job, pods=[running])
    assert act.Requeue(60.0) in actions and _pending(actions) == [PREEMPTED]


@pytest.mark.parametrize("kind", ["RUNNING", "PENDING"])
def test_a_preempted_run_goes_back_to_waiting_not_crashed(k8s, kind):
    run = k8s.flowrun(state=k8s.state(kind), attempt=1, podName="run-1-abcde")
    job = _queued_job(k8s, run, conditions=[_suspended(k8s, "True", -1)])
    stopping = k8s.pod(run, created=-60, deleting=29)  # the Job controller deletes it
    actions = _decide(k8s, run, job, pods=[stopping])
    assert _pending(actions) == [PREEMPTED]
    assert act.Requeue(39.0) in actions  # force it out if it is stuck
    (write,) = [a for a in actions if isinstance(a, act.WriteStatus)]
    assert write.fields == {}  # same attempt: nothing of it is consumed
    gone = k8s.pod(run, created=-60, deleting=-1)
    assert _pending(_decide(k8s, run, job, gone=[gone])) == [PREEMPTED]


def test_a_preempted_pod_stuck_terminating_is_forced_out(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1)
    job = _queued_job(k8s, run, conditions=[_suspended(k8s, "True", -60)])
    stuck = k8s.pod(run, created=-90, deleting=-30)
    assert _decide(k8s, run, job, pods=[stuck]) == [act.DeletePod("run-1-abcde", 0)]


def test_a_pod_deletion_seen_before_the_suspension_is_checked_with_the_api(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    job = _queued_job(k8s, run, suspend=False, conditions=[_suspended(k8s, "False", -120)],
                      startTime=k8s.ts(-120))
    stopping = k8s.pod(run, created=-100, deleting=29)
    assert _decide(k8s, run, job, pods=[stopping]) == [act.Refresh(children=True)]


def test_a_readmitted_run_waits_for_its_new_pod_and_goes_on_with_it(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1,
                      podName="run-1-abcde")
    job = _queued_job(k8s, run, suspend=False, conditions=[_suspended(k8s, "False", -1)],
                      startTime=k8s.ts(-1))
    old = k8s.pod(run, created=-90, deleting=-20)
    # The preempted pod's deletion is no crash; the new pod counts from the admission.
    assert _decide(k8s, run, job, gone=[old], fresh=True) == [act.Requeue(1.0)]
    new = k8s.pod(run, name="run-1-fghij", created=0, running=False)
    (write,) = _decide(k8s, run, job, pods=[new], gone=[old], fresh=True)[1:]
    assert write.fields == {"podName": "run-1-fghij"}
    assert write.states == ()


def test_a_readmission_seen_before_the_job_controller_synced_is_no_crash(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1,
                      podName="run-1-abcde")
    # spec.suspend is false already; the condition still tells of the preemption.
    job = _queued_job(k8s, run, suspend=False, conditions=[_suspended(k8s, "True", -20)])
    old = k8s.pod(run, created=-90, deleting=-20, exit_code=143)
    actions = _decide(k8s, run, job, gone=[old], fresh=True)
    assert not any(isinstance(a, act.WriteStatus) for a in actions), actions


@pytest.mark.parametrize("seen", ["gone", "being deleted"])
def test_a_preemption_and_readmission_within_one_second_is_no_crash(k8s, seen):
    """Conditions and creation times are whole seconds: the pod the preemption stopped may
    bear the very second of the re-admission. Deleted, it is the preemption's."""
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1,
                      podName="run-1-abcde")
    job = _queued_job(k8s, run, suspend=False, conditions=[_suspended(k8s, "False", -1)],
                      startTime=k8s.ts(-1))
    old = k8s.pod(run, created=-1, deleting=-1 if seen == "gone" else 29, exit_code=143)
    actions = _decide(k8s, run, job, **({"gone": [old]} if seen == "gone" else
                                         {"pods": [old]}), fresh=True)
    assert not any(isinstance(a, act.WriteStatus) for a in actions), actions
    # A pod of that second that is not being deleted is the new admission's.
    new = k8s.pod(run, name="run-1-fghij", created=-1, running=False)
    (write,) = [a for a in _decide(k8s, run, job, pods=[new], gone=[old], fresh=True)
                if isinstance(a, act.WriteStatus)]
    assert write.fields == {"podName": "run-1-fghij"}


def test_cancelling_a_preempted_run_deletes_its_job_so_it_is_not_admitted_again(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING", message=PREEMPTED), attempt=1, cancel=True)
    job = _queued_job(k8s, run, conditions=[_suspended(k8s, "True", -5)])
    gone = k8s.pod(run, created=-60, deleting=-5)
    actions = _decide(k8s, run, job, gone=[gone], fresh=True)
    assert actions[0] == act.DeleteJob("run-1")
    assert [s.name for s in actions[-1].states] == ["Cancelled"]
