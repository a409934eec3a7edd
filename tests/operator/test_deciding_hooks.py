"""The decision about a final run's on_crashed / on_cancellation hooks after a hard kill:
when the operator claims them and starts a hook Job, how it follows the Job, and when it
leaves them alone (the engine ran them, none declared, already done). Pure: plain dicts
and an injected clock (`k8s.now`)."""

from __future__ import annotations

from datetime import timedelta

from flowpod import contract
from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import kill_hooks
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.runs import Policy

OOM = "OOMKilled: the flow used more memory than its limit"


def decide(k8s, run, *, jobs=(), pods=(), gone=(), fresh=False, policy=Policy(),
           job_error=None, now=None):
    observation = obs.Observation(run, k8s.deployment(), jobs=list(jobs), pods=list(pods),
                                  gone_pods=list(gone), fresh=fresh, job_error=job_error)
    return _deciding.decide(observation, now or k8s.now, policy)


def crashed(k8s, name="run", **hooks):
    """A run the operator marked Crashed after its pod was OOM-killed."""
    record = {"declared": ["on_crashed"], **hooks} if hooks.get("declared", True) else {}
    record = {k: v for k, v in record.items() if v is not None}
    return k8s.flowrun(name, state=k8s.state("CRASHED", message=OOM), attempt=1,
                       exitCode=137, reason="OOMKilled", podName=f"{name}-1-abcde",
                       **({"hooks": record} if record else {}))


def claimed(k8s, outcome="Pending", **extra):
    return crashed(k8s, runner="Job", job="run-hooks", outcome=outcome, **extra)


def hook_job(k8s, run, **conditions):
    job = kill_hooks.build_job(_run_of(k8s, run), "on_crashed")
    job["metadata"].update(uid="uid-hooks", resourceVersion="70",
                           creationTimestamp=k8s.ts(-2))
    job["status"] = {"conditions": [{"type": t, "status": "True", **c}
                                    for t, c in conditions.items()]}
    return job


def hook_pod(k8s, run, job, **terminated):
    pod = k8s.pod(run, name="run-hooks-xyz12", exit_code=terminated.pop("code", 0),
                  term_reason=terminated.pop("reason", None))
    pod["metadata"]["labels"] = job["spec"]["template"]["metadata"]["labels"]
    return pod


def _run_of(k8s, run):
    from flowpod_operator._decisions.runs import Run, group_attempts

    o = obs.Observation(run, k8s.deployment(), jobs=[k8s.job(run)])
    return Run(o, None, group_attempts(o), 1, k8s.now, Policy())


def _writes(actions):
    return [a for a in actions if isinstance(a, act.WriteStatus)]


def test_a_killed_run_that_declares_on_crashed_claims_its_hooks_for_a_hook_job(k8s):
    run = crashed(k8s)
    actions = decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run, exit_code=137,
                                                                  term_reason="OOMKilled")])
    assert actions == [act.WriteStatus((), {"hooks": {
        "runner": "Job", "job": "run-hooks", "outcome": "Pending",
        "message": "hook Job run-hooks runs the on_crashed hooks"}})]


def test_the_claimed_hook_job_is_created_once_the_absence_is_certain(k8s):
    run = claimed(k8s)
    assert decide(k8s, run, jobs=[k8s.job(run)]) == [act.Refresh(children=True)]
    actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True)
    (create,) = [a for a in actions if isinstance(a, act.CreateJob)]
    job = create.manifest
    attempt = k8s.job(run)["spec"]["template"]["spec"]["containers"][0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert create.name == "run-hooks"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == Policy().hooks_deadline_seconds
    assert container["image"] == attempt["image"]
    assert container["command"] == list(contract.ENGINE_COMMAND)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[contract.ENV_HOOKS] == "on_crashed"
    assert env[contract.ENV_ENTRYPOINT] == "flows/hello.py:hello"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == \
        k8s.job(run)["spec"]["template"]["spec"]["serviceAccountName"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert contract.LABEL_ATTEMPT not in labels  # not an attempt of the run
    assert labels[contract.LABEL_HOOKS] == "on_crashed"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-run"


def test_a_hook_job_deleted_after_its_hooks_started_is_not_made_again(k8s):
    run = claimed(k8s, outcome="Running")
    actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True)
    assert not any(isinstance(a, act.CreateJob) for a in actions)
    (write,) = _writes(actions)
    assert write.fields["hooks"]["outcome"] == "Failed"
    assert write.fields["hooks"]["message"] == (
        "hook Job run-hooks was deleted while its on_crashed hooks ran; they are not run again")


def test_the_hooks_deadline_comes_from_the_policy(k8s):
    run = claimed(k8s)
    actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True,
                     policy=Policy(hooks_deadline_seconds=42))
    (create,) = [a for a in actions if isinstance(a, act.CreateJob)]
    assert create.manifest["spec"]["activeDeadlineSeconds"] == 42


def test_a_running_hook_job_is_left_to_run_and_keeps_the_run_from_its_ttl(k8s):
    run = claimed(k8s)
    job = hook_job(k8s, run)
    later = k8s.now + timedelta(hours=1)
    actions = decide(k8s, run, jobs=[k8s.job(run), job], policy=Policy(
        ttl_seconds_after_finished=0), now=later)
    assert not any(isinstance(a, (act.CreateJob, act.DeleteFlowRun, act.WriteStatus))
                   for a in actions), actions


def test_a_completed_hook_job_without_a_record_is_recorded_succeeded(k8s):
    run = claimed(k8s)
    job = hook_job(k8s, run, Complete={})
    assert decide(k8s, run, jobs=[k8s.job(run), job]) == [act.WriteStatus((), {"hooks": {
        "outcome": "Succeeded", "message": "hook Job run-hooks completed"}})]


def test_a_failed_hook_job_is_recorded_failed_with_why(k8s):
    run = claimed(k8s)
    job = hook_job(k8s, run, Failed={"reason": "BackoffLimitExceeded"})
    pod = hook_pod(k8s, run, job, code=137, reason="OOMKilled")
    (write,) = decide(k8s, run, jobs=[k8s.job(run), job], pods=[pod])
    record = write.fields["hooks"]
    assert record["outcome"] == "Failed"
    assert record["message"].startswith("hook Job run-hooks failed: OOMKilled")


def test_a_hook_job_the_api_server_refuses_is_recorded_failed(k8s):
    run = claimed(k8s)
    (write,) = decide(k8s, run, jobs=[k8s.job(run)], fresh=True, job_error="spec: Invalid")
    assert write.fields["hooks"] == {
        "outcome": "Failed", "message": "hook Job run-hooks could not be created: spec: Invalid"}


def test_hooks_that_ran_are_never_run_again_and_clean_up_resumes(k8s):
    for outcome in ("Succeeded", "Failed"):
        run = claimed(k8s, outcome=outcome)
        actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True,
                         policy=Policy(ttl_seconds_after_finished=0))
        assert actions == [act.DeleteFlowRun("uid-run", "ttlSecondsAfterFinished of 0 "
                                                        "expired")]


def test_hooks_the_engine_claimed_are_left_to_the_engine(k8s):
    run = crashed(k8s, runner="Engine", outcome="Running")
    alive = k8s.pod(run, deleting=10)
    assert not _writes(decide(k8s, run, jobs=[k8s.job(run)], pods=[alive], fresh=True))
    # Its process died while they ran: recorded, and never run a second time.
    (write,) = decide(k8s, run, jobs=[k8s.job(run)],
                      pods=[k8s.pod(run, exit_code=137)], fresh=True)
    assert write.fields["hooks"]["outcome"] == "Failed"
    assert "not run again" in write.fields["hooks"]["message"]


def test_no_hook_job_when_the_flow_declares_none_or_its_engine_never_started(k8s):
    run = crashed(k8s, declared=None)  # no status.hooks: nothing of the flow ran
    actions = decide(k8s, run, jobs=[k8s.job(run)], fresh=True)
    assert not any(isinstance(a, act.CreateJob) for a in actions)
    assert not _writes(actions)


def test_only_the_hook_of_the_final_state_runs(k8s):
    both = {"declared": ["on_crashed", "on_cancellation"]}
    cancelled = k8s.flowrun(state=k8s.state("CANCELLED", message="force-deleted"), attempt=1,
                            hooks=both)
    (write,) = decide(k8s, cancelled, jobs=[k8s.job(cancelled)], fresh=True)
    assert write.fields["hooks"]["message"] == \
        "hook Job run-hooks runs the on_cancellation hooks"
    only_crashed = k8s.flowrun(state=k8s.state("CANCELLED"), attempt=1,
                               hooks={"declared": ["on_crashed"]})
    assert not _writes(decide(k8s, only_crashed, jobs=[k8s.job(only_crashed)], fresh=True))
    for kind in ("COMPLETED", "FAILED"):
        run = k8s.flowrun(state=k8s.state(kind), attempt=1, hooks=both)
        assert not _writes(decide(k8s, run, jobs=[k8s.job(run)], fresh=True))


def test_a_hook_job_does_not_count_as_an_attempt(k8s):
    run = claimed(k8s)
    job = hook_job(k8s, run)
    assert obs.attempt_of(job) == 0 and kill_hooks.is_hooks_object(job)
    # A restarted operator that finds the Job already there creates no second one.
    actions = decide(k8s, run, jobs=[k8s.job(run), job], fresh=True)
    assert not any(isinstance(a, act.CreateJob) for a in actions)


def test_long_run_names_give_a_valid_hook_job_name(k8s):
    name = kill_hooks.job_name("r" * 80)
    assert len(name) <= 63 and name.endswith("-hooks")
    assert name == kill_hooks.job_name("r" * 80) != kill_hooks.job_name("r" * 79 + "s")
