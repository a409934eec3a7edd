"""The decision function on a started attempt: every row of the pod/Job mapping table in
flowpod_operator._decisions.diagnosing, with its exact message, for a run whose engine did not report
a final state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowpod import contract, states

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import observations as obs


def running_run(k8s, kind="RUNNING", **kw):
    return k8s.flowrun(state=k8s.state(kind), attempt=1, podName="run-1-abcde", **kw)


def decide(k8s, run, *, pods=(), gone=(), job="default", fresh=False, deployment="default",
           job_events=None, **job_kw):
    if job == "default":
        job = k8s.job(run, **job_kw)
    if deployment == "default":
        deployment = k8s.deployment()
    return _deciding.decide(obs.Observation(
        run, deployment, jobs=[job] if job else [], pods=list(pods), gone_pods=list(gone),
        fresh=fresh, job_events=job_events), k8s.now)


def crashed(actions) -> act.WriteStatus:
    write = actions[-1]
    assert isinstance(write, act.WriteStatus)
    assert [s.name for s in write.states] == ["Crashed"]
    return write


def test_running_pod_needs_nothing(k8s):
    run = running_run(k8s)
    assert decide(k8s, run, pods=[k8s.pod(run)]) == []


def test_pod_name_is_recorded_once_seen(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1)
    (write,) = decide(k8s, run, pods=[k8s.pod(run)])
    assert write.states == () and write.fields == {"podName": "run-1-abcde"}


@pytest.mark.parametrize("code, hint", [
    (1, None), (3, None),
    (137, "SIGKILL: the process was killed outright, most often for using more memory than "
          "it may, or by hand"),
    (143, "SIGTERM: the process was asked to stop, e.g. its pod was deleted"),
    (247, "the process was most likely stopped for using too much memory"),
])
def test_nonzero_exit_is_crashed_with_code_and_hint(k8s, code, hint):
    run = running_run(k8s)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, exit_code=code)]))
    expected = f"exited with code {code}" + (f" ({hint})" if hint else "")
    assert write.states[0].message == expected
    assert write.fields == {"exitCode": code, "reason": "Error", "podName": "run-1-abcde"}


def test_termination_message_is_appended(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, exit_code=1, term_message="Traceback ...\nValueError: boom\n")
    write = crashed(decide(k8s, run, pods=[pod]))
    assert write.states[0].message == "exited with code 1: Traceback ...\nValueError: boom"


def test_oom_killed(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, exit_code=137, term_reason="OOMKilled", memory="64Mi")
    write = crashed(decide(k8s, run, pods=[pod]))
    assert write.states[0].message.startswith(
        "OOMKilled: the flow used more memory than its limit of 64Mi")
    assert write.fields["reason"] == "OOMKilled" and write.fields["exitCode"] == 137


@pytest.mark.parametrize("pod_kw", [
    {"reason": "Evicted", "message": "The node was low on resource: memory.", "exit_code": 137},
    {"conditions": [{"type": "DisruptionTarget", "status": "True",
                     "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}],
     "exit_code": 143},
    {"conditions": [{"type": "DisruptionTarget", "status": "True",
                     "reason": "PreemptionByScheduler"}], "exit_code": 143},
])
def test_evicted(k8s, pod_kw):
    run = running_run(k8s)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, **pod_kw)]))
    assert write.states[0].message.startswith("Evicted: pod run-1-abcde was evicted")
    assert write.fields["reason"] == "Evicted"


def test_eviction_detail_is_kept(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, reason="Evicted", message="The node was low on resource: memory.",
                  exit_code=137)
    write = crashed(decide(k8s, run, pods=[pod]))
    assert write.states[0].message == ("Evicted: pod run-1-abcde was evicted (The node was "
                                       "low on resource: memory.)")


@pytest.mark.parametrize("pod_kw", [
    {"conditions": [{"type": "DisruptionTarget", "status": "True",
                     "reason": "DeletionByTaintManager"}], "exit_code": 137},
    {"reason": "NodeLost", "exit_code": 137},
])
def test_node_lost(k8s, pod_kw):
    run = running_run(k8s)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, **pod_kw)]))
    assert write.states[0].message.startswith("node lost: flowpod-node stopped responding")
    assert write.fields["reason"] == "NodeLost"


def test_node_lost_pod_gone_while_unobserved(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, deleting=-1, conditions=[{"type": "DisruptionTarget", "status": "True",
                                                "reason": "DeletionByPodGC"}])
    write = crashed(decide(k8s, run, gone=[pod]))
    assert write.fields["reason"] == "NodeLost"


@pytest.mark.parametrize("kind", ["FailureTarget", "Failed"])
def test_job_deadline_exceeded_is_crashed_and_not_retried(k8s, kind):
    run = running_run(k8s)
    pod = k8s.pod(run, deleting=20)  # the Job controller is stopping it
    actions = decide(k8s, run, pods=[pod], retries=3, timeout=60,
                     conditions=[{"type": kind, "reason": "DeadlineExceeded"}])
    write = crashed(actions)
    assert write.states[0].message == ("deadline exceeded: the run did not finish within "
                                       "timeoutSeconds (60s), so Kubernetes stopped its Job")
    assert write.fields["reason"] == "DeadlineExceeded"


def test_pod_deleted_by_someone_else(k8s):
    run = running_run(k8s)
    gone = k8s.pod(run, deleting=0)
    write = crashed(decide(k8s, run, gone=[gone]))
    assert write.states[0].message == ("pod deleted: pod run-1-abcde was deleted before the "
                                       "run reported a final state")
    assert write.fields == {"reason": "PodDeleted", "podName": "run-1-abcde"}


def test_deleted_pod_that_had_exited_reports_its_exit(k8s):
    run = running_run(k8s)
    write = crashed(decide(k8s, run, gone=[k8s.pod(run, exit_code=143)]))
    assert write.states[0].message.startswith("exited with code 143 (SIGTERM")


def test_pod_deleted_by_someone_else_gets_its_verdict_at_once(k8s):
    # The engine sees only a SIGTERM; the operator writes why, before the engine can.
    run = running_run(k8s)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, deleting=5)]))
    assert write.states[0].message.startswith("pod deleted: pod run-1-abcde")
    assert write.fields["reason"] == "PodDeleted"


def test_terminating_pod_is_given_its_grace_then_force_deleted(k8s):
    run = running_run(k8s)
    actions = decide(k8s, run, pods=[k8s.pod(run, deleting=-11)])
    assert actions[0] == act.DeletePod("run-1-abcde", 0)
    assert crashed(actions).states[0].message.startswith("pod deleted: pod run-1-abcde")
    final = running_run(k8s, kind="CRASHED")
    assert act.Requeue(15.0) in decide(k8s, final, pods=[k8s.pod(final, deleting=5)])
    assert act.DeletePod("run-1-abcde", 0) in decide(k8s, final,
                                                     pods=[k8s.pod(final, deleting=-11)])


def test_pod_evicted_while_running_gets_the_evicted_verdict_at_once(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, deleting=30, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
         "message": "Eviction API: evicting"}])
    write = crashed(decide(k8s, run, pods=[pod]))
    assert write.states[0].message == ("Evicted: pod run-1-abcde was evicted "
                                       "(Eviction API: evicting)")


def test_pod_deleted_by_the_job_past_its_deadline_is_a_deadline_crash(k8s):
    run = running_run(k8s)
    job = k8s.job(run, timeout=2,
                  startTime=contract.format_time(k8s.now - timedelta(seconds=3)))
    assert job["spec"]["activeDeadlineSeconds"] == 2
    actions = decide(k8s, run, pods=[k8s.pod(run, deleting=30)], job=job)
    assert crashed(actions).states[0].message.startswith("deadline exceeded")


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                    "CreateContainerConfigError"])
def test_image_or_config_problem_waits_for_pending_timeout(k8s, reason):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1, podName="run-1-abcde")
    young = k8s.pod(run, waiting=reason, created=-20)
    # Before the timeout the run says why it waits (once), then only waits.
    first = decide(k8s, run, pods=[young], pending=60)
    assert first[0] == act.Requeue(40.0)
    (step,) = first[1].states
    assert step.type is states.StateType.PENDING and step.message.startswith(f"{reason}: ")
    shown = k8s.flowrun(state=k8s.state("PENDING", message=step.message), attempt=1,
                        podName="run-1-abcde")
    assert decide(k8s, shown, pods=[young], pending=60) == [act.Requeue(40.0)]
    old = k8s.pod(run, waiting=reason, waiting_message='image "nope:1" not found',
                  created=-61)
    actions = decide(k8s, run, pods=[old], pending=60)
    assert actions[0] == act.DeletePod("run-1-abcde", 30)
    write = crashed(actions)
    assert write.states[0].message == (
        f"{reason}: the flow container could not start for 60s (pendingTimeoutSeconds) "
        f"(image \"nope:1\" not found); check the image name and the Deployment's podTemplate")
    assert write.fields == {"reason": reason, "podName": "run-1-abcde"}


def test_unschedulable_longer_than_pending_timeout(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1)
    pod = k8s.pod(run, running=False, created=-400, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 node(s) didn't match node selector."}])
    del pod["spec"]["nodeName"]
    write = crashed(decide(k8s, run, pods=[pod]))
    assert write.states[0].message == (
        "Unschedulable: no node could run pod run-1-abcde for 300s (pendingTimeoutSeconds) "
        "(0/1 nodes are available: 1 node(s) didn't match node selector.)")


def test_exit_zero_without_final_state(k8s):
    run = running_run(k8s)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, exit_code=0)]))
    assert write.states[0].message == "engine exited without reporting a final state"
    assert write.fields == {"exitCode": 0, "reason": "Completed", "podName": "run-1-abcde"}


def test_suspended_run_may_end_its_pod(k8s):
    run = k8s.flowrun(state=k8s.state("PAUSED", "Suspended"), attempt=1)
    assert decide(k8s, run, pods=[k8s.pod(run, exit_code=0)]) == []


def test_vanished_pod_needs_a_fresh_look_first(k8s):
    run = running_run(k8s)
    assert decide(k8s, run, failed=1) == [act.Refresh(children=True)]
    write = crashed(decide(k8s, run, failed=1, fresh=True))
    assert write.states[0].message == ("pod deleted: the pod of Job run-1 failed or was "
                                       "deleted before the run reported a final state")


def test_deleted_job_needs_a_fresh_look_first(k8s):
    run = running_run(k8s)
    assert decide(k8s, run, job=None) == [act.Refresh(children=True)]
    write = crashed(decide(k8s, run, job=None, fresh=True))
    assert write.states[0].message == ("Job run-1 was deleted before the run reported a "
                                       "final state")


def test_job_that_never_makes_a_pod_times_out(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1)
    # A Job without a pod for a moment is asked why (its Events), then looked at again.
    assert decide(k8s, run, created=-1, pending=60) == [act.Requeue(1.0)]
    assert decide(k8s, run, created=-10, pending=60) == [act.Refresh(job_events="run-1")]
    assert decide(k8s, run, created=-10, pending=60, job_events=[]) == [act.Requeue(5.0)]
    assert decide(k8s, run, created=-58, pending=60, job_events=[]) == [act.Requeue(2.0)]
    assert decide(k8s, run, created=-61, pending=60) == [act.Refresh(children=True)]
    actions = decide(k8s, run, created=-61, pending=60, fresh=True)
    assert actions[0] == act.DeleteJob("run-1")
    assert crashed(actions).states[0].message.startswith(
        "PendingTimeout: Job run-1 started no pod within pendingTimeoutSeconds (60s)")


def test_paused_run_whose_pod_dies_is_crashed(k8s):
    run = k8s.flowrun(state=k8s.state("PAUSED"), attempt=1)
    write = crashed(decide(k8s, run, pods=[k8s.pod(run, exit_code=137)]))
    assert write.fields["exitCode"] == 137


def test_a_crash_asks_for_the_log_tail_of_its_pod_while_the_pod_exists(k8s):
    run = running_run(k8s)
    pod = k8s.pod(run, exit_code=1, name="run-1-abcde")
    assert crashed(decide(k8s, run, pods=[pod])).log_tail_of == "run-1-abcde"
    # A deleted pod's log is gone with it: nothing to read.
    assert crashed(decide(k8s, run, gone=[pod])).log_tail_of is None


def test_an_operator_cancellation_asks_for_the_log_tail_of_the_stopped_pod(k8s):
    run = running_run(k8s, "CANCELLING", cancel=True)
    pod = k8s.pod(run, exit_code=143, name="run-1-abcde")
    write = decide(k8s, run, pods=[pod], fresh=True)[-1]
    assert [s.name for s in write.states] == ["Cancelled"]
    assert write.log_tail_of == "run-1-abcde"
