"""The operator's answer to spec.resume (flowpod_operator._decisions.resuming, through
deciding.decide): input validated against the published schema with messages naming the
field, a resume spent once accepted, stale keys ignored, a resumed Suspended run's new
attempt, and the deadline of a Suspended run. Pure: plain dicts in, actions out."""

from __future__ import annotations

import pytest

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import resuming

SCHEMA = {"type": "object", "required": ["approved", "approver"],
          "properties": {"approved": {"type": "boolean"}, "approver": {"type": "string"},
                         "tags": {"type": "array", "items": {"type": "string"}}}}


def _pause(k8s, key="pause-1", suspended=False, timeout=3600.0, **extra):
    return {"key": key, "inputSchema": SCHEMA, "suspended": suspended,
            "timeoutAt": k8s.ts(timeout), **extra}


def _run(k8s, *, suspended=False, resume=None, generation=2, pause=None, **status):
    name = "Suspended" if suspended else "Paused"
    run = k8s.flowrun(state=k8s.state("PAUSED", name), attempt=1, podName="run-1-abcde",
                      pause=pause or _pause(k8s, suspended=suspended), **status)
    if resume is not None:
        run["spec"]["resume"] = resume
    run["metadata"]["generation"] = generation
    return run


def decide(k8s, run, pods):
    return _deciding.decide(obs.Observation(run, k8s.deployment(), jobs=[k8s.job(run)],
                                            pods=pods), k8s.now)


def test_valid_input_resumes_a_paused_run_in_its_pod(k8s):
    good = {"approved": True, "approver": "ada"}
    run = _run(k8s, resume={"input": good})
    (write,) = decide(k8s, run, [k8s.pod(run)])
    assert [s.name for s in write.states] == ["Running"]
    assert write.states[0].message == "Resumed (pause 'pause-1') with input"
    assert write.fields == {"pause": None,
                            "resumed": {"key": "pause-1", "input": good, "generation": 2}}


@pytest.mark.parametrize("given,problem", [
    ({"approved": "maybe", "approver": "ada"},
     "spec.resume.input.approved: 'maybe' is not of type 'boolean'"),
    ({"approved": True}, "spec.resume.input: 'approver' is a required property"),
    ({"approved": True, "approver": "ada", "tags": ["a", 2]},
     "spec.resume.input.tags[1]: 2 is not of type 'string'"),
    (None, "spec.resume.input: None is not of type 'object'"),
])
def test_invalid_input_is_refused_naming_the_field_and_the_run_stays_paused(k8s, given,
                                                                          problem):
    run = _run(k8s, resume={"key": "pause-1", "input": given})
    (write,) = decide(k8s, run, [k8s.pod(run)])
    assert write.states == ()
    refused = write.fields["pause"]["refused"]
    assert refused["generation"] == 2
    assert refused["message"] == (f"Resume of pause 'pause-1' refused: {problem}; the run "
                                  f"stays paused")
    assert write.event == ("Warning", "ResumeRefused", refused["message"])
    assert write.fields["pause"]["key"] == "pause-1", "the published pause is kept"
    assert write.fields["observedGeneration"] == 2


def test_a_refused_resume_is_answered_once(k8s):
    refused = {"generation": 2, "message": "..."}
    run = _run(k8s, resume={"input": {}}, pause=_pause(k8s, refused=refused))
    assert decide(k8s, run, [k8s.pod(run)]) == []


@pytest.mark.parametrize("resume,status", [
    ({"key": "pause-0", "input": {"approved": True, "approver": "ada"}}, {}),  # stale key
    ({"input": {"approved": True, "approver": "ada"}},  # spent on the earlier pause
     {"resumed": {"key": "pause-0", "input": None, "generation": 2}}),
])
def test_a_stale_or_spent_resume_is_ignored(k8s, resume, status):
    run = _run(k8s, resume=resume, **status)
    assert decide(k8s, run, [k8s.pod(run)]) == []


def test_a_resumed_suspended_run_gets_a_new_attempt_once_its_pod_ended(k8s):
    good = {"approved": True, "approver": "ada"}
    run = _run(k8s, suspended=True, resume={"input": good})
    create, write = decide(k8s, run, [k8s.pod(run, exit_code=0)])
    assert isinstance(create, act.CreateJob) and create.name == "run-2"
    assert [s.name for s in write.states] == ["Pending"]
    assert write.states[0].message == ("Job run-2 created (attempt 2, resumed (pause "
                                       "'pause-1') with input)")
    assert write.fields["resumed"] == {"key": "pause-1", "input": good, "generation": 2}
    assert write.fields["pause"] is None and write.fields["attempt"] == 2


def test_a_resumed_suspended_run_waits_for_its_old_pod_to_end(k8s):
    run = _run(k8s, suspended=True, resume={"input": {"approved": True, "approver": "x"}})
    assert decide(k8s, run, [k8s.pod(run)]) == [act.Requeue(1.0)]


def test_a_suspended_run_is_looked_at_again_at_its_deadline_then_fails(k8s):
    waiting = _run(k8s, suspended=True, pause=_pause(k8s, suspended=True, timeout=90))
    assert decide(k8s, waiting, [k8s.pod(waiting, exit_code=0)]) == [act.Requeue(90.0)]
    expired = _run(k8s, suspended=True, pause=_pause(k8s, suspended=True, timeout=-1))
    (write,) = decide(k8s, expired, [k8s.pod(expired, exit_code=0)])
    assert [s.type.value for s in write.states] == ["FAILED"]
    assert write.states[0].message == (f"The flow run was suspended and not resumed before "
                                       f"{k8s.ts(-1).replace('Z', '.000Z')}")
    assert write.fields == {"pause": None}


def test_no_schema_means_no_input_is_checked(k8s):
    assert resuming.input_problem(None, {"anything": 1}) is None
    assert "not a valid" not in (resuming.input_problem(SCHEMA, {"approved": True,
                                                                 "approver": "a"}) or "")
