"""The decision function over a run's life: infrastructure retries (never two pods at
once), cancellation in every phase, and what happens after a final state."""

from __future__ import annotations

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import observations as obs


def decide(k8s, run, *, jobs=(), pods=(), gone=(), fresh=False, deployment="default"):
    if deployment == "default":
        deployment = k8s.deployment(retries=2)
    return _deciding.decide(obs.Observation(run, deployment, jobs=list(jobs), pods=list(pods),
                                            gone_pods=list(gone), fresh=fresh), k8s.now)


def state_names(actions) -> list[str]:
    write = actions[-1]
    assert isinstance(write, act.WriteStatus), actions
    return [s.name for s in write.states]


# --- infrastructure retries ----------------------------------------------------------------

def test_crash_with_retries_left_awaits_retry_instead_of_crashing(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=2)],
                     pods=[k8s.pod(run, exit_code=137)])
    assert state_names(actions) == ["AwaitingRetry"]
    write = actions[-1]
    assert write.states[0].type.value == "SCHEDULED"
    assert write.states[0].message.startswith("exited with code 137 (SIGKILL")
    assert write.states[0].message.endswith("; retrying as attempt 2 of 3")
    assert write.fields == {"exitCode": 137, "reason": "Error", "podName": "run-1-abcde"}
    assert not any(isinstance(a, act.CreateJob) for a in actions)


def test_next_attempt_starts_once_the_pod_is_gone(k8s):
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1)
    create, write = decide(k8s, run, jobs=[k8s.job(run, retries=2)],
                           pods=[k8s.pod(run, exit_code=137)])
    assert create.name == "run-2"
    env = {e["name"]: e.get("value") for e in
           create.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOWPOD_ATTEMPT"] == "2"
    assert [s.name for s in write.states] == ["Pending"]
    assert write.states[0].message == "Job run-2 created (attempt 2 of 3)"
    assert write.fields == {"attempt": 2, "jobName": "run-2", "podName": None,
                            "exitCode": None, "reason": None}


def test_next_attempt_waits_while_the_old_pod_is_stopping(k8s):
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1,
                      podName="run-1-abcde")
    stopping = k8s.pod(run, waiting="ImagePullBackOff", created=-400, deleting=20)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=2)], pods=[stopping])
    assert actions == [act.Requeue(30.0)]


def test_unstarted_pod_of_a_crashed_attempt_is_removed_before_retrying(k8s):
    run = k8s.flowrun(state=k8s.state("PENDING"), attempt=1)
    stuck = k8s.pod(run, waiting="ImagePullBackOff", created=-400)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=2)], pods=[stuck])
    assert actions[0] == act.DeletePod("run-1-abcde", 30)
    assert state_names(actions) == ["AwaitingRetry"]
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=2)], pods=[stuck])
    assert actions == [act.DeletePod("run-1-abcde", 30)]
    create, _ = decide(k8s, run, jobs=[k8s.job(run, retries=2)], gone=[stuck])
    assert create.name == "run-2"


def test_last_attempt_crashes(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=3)
    actions = decide(k8s, run, jobs=[k8s.job(run, 3, retries=2)],
                     pods=[k8s.pod(run, 3, exit_code=1)])
    assert state_names(actions) == ["Crashed"]


def test_engine_side_awaiting_retry_with_a_live_pod_is_left_alone(k8s):
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1,
                      podName="run-1-abcde")
    assert decide(k8s, run, jobs=[k8s.job(run, retries=2)], pods=[k8s.pod(run)]) == []


def test_next_attempt_made_before_a_restart_is_recorded(k8s):
    run = k8s.flowrun(state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run, 1, retries=2), k8s.job(run, 2, retries=2)],
                     pods=[k8s.pod(run, 1, exit_code=1)])
    assert state_names(actions) == ["Pending"]
    assert actions[-1].fields["attempt"] == 2
    assert not any(isinstance(a, act.CreateJob) for a in actions)


def test_retry_settings_come_from_the_job_not_a_changed_deployment(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=0)],
                     pods=[k8s.pod(run, exit_code=1)], deployment=k8s.deployment(retries=5))
    assert state_names(actions) == ["Crashed"]


# --- cancellation --------------------------------------------------------------------------

def test_cancel_before_any_state(k8s):
    actions = decide(k8s, k8s.flowrun(cancel=True))
    assert state_names(actions) == ["Cancelled"]
    assert actions[-1].states[0].message == ("Cancelled by request (spec.cancel) before the "
                                             "run started")


def test_cancel_in_scheduled(k8s):
    run = k8s.flowrun(cancel=True, scheduled=600, state=k8s.state("SCHEDULED"))
    assert state_names(decide(k8s, run)) == ["Cancelled"]


def test_cancel_while_awaiting_a_retry(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("SCHEDULED", "AwaitingRetry"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run, retries=2)],
                     pods=[k8s.pod(run, exit_code=137)])
    assert state_names(actions) == ["Cancelled"]
    assert actions[-1].states[0].message == ("Cancelled by request (spec.cancel) while "
                                             "awaiting a retry")


def test_cancel_in_pending_without_a_pod_deletes_the_job(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("PENDING"), attempt=1)
    assert decide(k8s, run, jobs=[k8s.job(run)]) == [act.Refresh(children=True)]
    actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True)
    assert actions[0] == act.DeleteJob("run-1")
    assert state_names(actions) == ["Cancelled"]


def test_cancel_in_pending_with_an_unstarted_pod(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("PENDING"), attempt=1)
    pod = k8s.pod(run, waiting="ContainerCreating")
    assert state_names(decide(k8s, run, jobs=[k8s.job(run)], pods=[pod])) == ["Cancelling"]


def test_cancel_in_running_sets_cancelling_then_deletes_with_grace(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("RUNNING"), attempt=1)
    deployment = k8s.deployment(grace=12)
    jobs, pods = [k8s.job(run, grace=12)], [k8s.pod(run)]
    actions = decide(k8s, run, jobs=jobs, pods=pods, deployment=deployment)
    assert state_names(actions) == ["Cancelling"]
    assert actions[-1].states[0].message == ("Cancellation requested (spec.cancel): stopping "
                                             "pod run-1-abcde with a 12s grace period")
    run = k8s.flowrun(cancel=True, state=k8s.state("CANCELLING"), attempt=1)
    actions = decide(k8s, run, jobs=jobs, pods=pods, deployment=deployment)
    assert actions == [act.Requeue(22.0), act.DeletePod("run-1-abcde", 12)]


def test_cancelling_waits_for_the_pod_then_cancels(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("CANCELLING"), attempt=1)
    job = k8s.job(run)
    assert decide(k8s, run, jobs=[job], pods=[k8s.pod(run, deleting=10)]) == [
        act.Requeue(20.0)]
    actions = decide(k8s, run, jobs=[job], pods=[k8s.pod(run, exit_code=143)])
    assert state_names(actions) == ["Cancelled"]
    assert actions[-1].states[0].message == ("Cancelled by request (spec.cancel); pod "
                                             "run-1-abcde stopped (exit code 143)")
    assert actions[-1].fields["exitCode"] == 143


def test_cancelling_with_a_pod_that_ignores_sigterm_is_bounded(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("CANCELLING"), attempt=1)
    stuck = k8s.pod(run, deleting=-11)
    actions = decide(k8s, run, jobs=[k8s.job(run)], pods=[stuck])
    assert actions[0] == act.DeletePod("run-1-abcde", 0)
    assert state_names(actions) == ["Cancelled"]
    assert "did not stop within its 30s grace period and was force-deleted" in \
        actions[-1].states[0].message


def test_cancelling_state_is_finished_even_if_spec_cancel_was_reset(k8s):
    run = k8s.flowrun(cancel=False, state=k8s.state("CANCELLING"), attempt=1)
    actions = decide(k8s, run, jobs=[k8s.job(run)], gone=[k8s.pod(run, exit_code=0)])
    assert state_names(actions) == ["Cancelled"]


def test_engine_reported_cancelled_stands(k8s):
    run = k8s.flowrun(cancel=True, state=k8s.state("CANCELLED"), attempt=1,
                      podName="run-1-abcde")
    (write,) = decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run, exit_code=0)])
    assert write.states == () and write.fields == {"exitCode": 0, "reason": "Completed"}


# --- after a final state -------------------------------------------------------------------

def test_final_run_records_its_pods_end_once(k8s):
    run = k8s.flowrun(state=k8s.state("COMPLETED"), attempt=1, podName="run-1-abcde")
    (write,) = decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run, exit_code=0)])
    assert write.states == () and write.fields == {"exitCode": 0, "reason": "Completed"}
    done = k8s.flowrun(state=k8s.state("COMPLETED"), attempt=1, podName="run-1-abcde",
                       exitCode=0, reason="Completed")
    assert decide(k8s, done, jobs=[k8s.job(done)], pods=[k8s.pod(done, exit_code=0)]) == []


def test_deadline_is_recorded_as_the_reason_even_if_the_engine_wrote_first(k8s):
    run = k8s.flowrun(state=k8s.state("CRASHED"), attempt=1, podName="run-1-abcde",
                      exitCode=143, reason="Error")
    job = k8s.job(run, conditions=[{"type": "Failed", "reason": "DeadlineExceeded"}])
    (write,) = decide(k8s, run, jobs=[job], pods=[k8s.pod(run, exit_code=143)])
    assert write.fields == {"reason": "DeadlineExceeded"}


def test_final_run_removes_a_pod_that_keeps_running(k8s):
    run = k8s.flowrun(state=k8s.state("COMPLETED", offset=-5), attempt=1,
                      podName="run-1-abcde")
    assert decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run)]) == [act.Requeue(25.0)]
    run = k8s.flowrun(state=k8s.state("COMPLETED", offset=-31), attempt=1,
                      podName="run-1-abcde")
    assert decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run)]) == [
        act.DeletePod("run-1-abcde", 30)]


def test_final_run_removes_an_unstarted_pod_at_once(k8s):
    run = k8s.flowrun(state=k8s.state("CRASHED"), attempt=1, podName="run-1-abcde",
                      reason="ImagePullBackOff")
    actions = decide(k8s, run, jobs=[k8s.job(run)],
                     pods=[k8s.pod(run, waiting="ImagePullBackOff")])
    assert actions == [act.DeletePod("run-1-abcde", 30)]


def test_final_run_without_attempts_needs_nothing(k8s):
    run = k8s.flowrun(state=k8s.state("FAILED"))
    assert decide(k8s, run) == []
