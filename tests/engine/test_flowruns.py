"""Unit tests of flowpod.flowruns: the wire form of states and the FlowRun status patch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowpod import contract, flowruns, states

T0 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def _apply(status: dict, patch: dict) -> dict:
    """What the API server does with a merge patch of .status (objects merge, lists replace)."""
    merged = dict(status)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _cond(status: dict, cond_type: str) -> dict:
    matches = [c for c in status["conditions"] if c["type"] == cond_type]
    assert len(matches) == 1, status["conditions"]
    return matches[0]


def test_exported_names_exist() -> None:
    for name in flowruns.__all__:
        assert hasattr(flowruns, name), name


def test_state_round_trips_through_the_wire() -> None:
    state = states.TimedOut("took too long", timestamp=T0)
    wire = flowruns.state_to_wire(state)
    assert wire == {"type": "FAILED", "name": "TimedOut", "message": "took too long",
                    "timestamp": "2025-01-02T03:04:05.678Z"}
    back = flowruns.state_from_wire(wire)
    assert (back.type, back.name, back.message, back.timestamp) == (
        states.StateType.FAILED, "TimedOut", "took too long", T0)


def test_state_from_wire_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="state.type"):
        flowruns.state_from_wire({"type": "DONE", "name": "x"})


def test_long_messages_are_truncated_to_the_schema_bound() -> None:
    wire = flowruns.state_to_wire(states.Failed("x" * 10_000, timestamp=T0))
    assert len(wire["message"]) == contract.MAX_MESSAGE_LENGTH
    assert wire["message"].endswith("(truncated)")


def test_first_patch_sets_state_history_conditions_and_generation() -> None:
    patch = flowruns.status_patch(None, states.Scheduled(timestamp=T0), generation=1, now=T0)
    assert patch["state"]["type"] == "SCHEDULED"
    assert patch["stateHistory"] == [patch["state"]]
    assert patch["observedGeneration"] == 1
    assert "startTime" not in patch and "endTime" not in patch
    succeeded = _cond(patch, "Succeeded")
    assert succeeded == {"type": "Succeeded", "status": "Unknown", "observedGeneration": 1,
                         "lastTransitionTime": "2025-01-02T03:04:05Z", "reason": "Scheduled",
                         "message": ""}
    assert _cond(patch, "Ready")["status"] == "False"


def test_a_run_to_completion() -> None:
    status: dict = {}
    t = T0
    for state in (states.Scheduled(), states.Pending(), states.Running()):
        status = _apply(status, flowruns.status_patch(status, state, generation=1, now=t))
        t += timedelta(seconds=10)
    assert status["startTime"] == "2025-01-02T03:04:25.678Z"  # the first RUNNING
    running_ltt = _cond(status, "Succeeded")["lastTransitionTime"]
    # Unknown stayed Unknown since Scheduled: the transition time must not move.
    assert running_ltt == "2025-01-02T03:04:05Z"

    t += timedelta(seconds=65)
    patch = flowruns.status_patch(status, states.Completed("done"), generation=1, now=t,
                                  result={"value": 42})
    status = _apply(status, patch)
    assert status["result"] == {"value": 42}
    assert status["endTime"] == contract.format_time(t)
    assert status["duration"] == "1m15s"
    assert [h["name"] for h in status["stateHistory"]] == [
        "Scheduled", "Pending", "Running", "Completed"]
    for cond_type in ("Succeeded", "Ready"):
        cond = _cond(status, cond_type)
        assert cond["status"] == "True"
        assert cond["reason"] == "Completed" and cond["message"] == "done"
        assert cond["lastTransitionTime"] == contract.format_time(t, fraction=False)
    # Ready was False from the start and only flipped now.


def test_ready_false_keeps_its_transition_time_until_it_flips() -> None:
    status = _apply({}, flowruns.status_patch({}, states.Pending(), generation=1, now=T0))
    later = T0 + timedelta(minutes=3)
    status = _apply(status, flowruns.status_patch(status, states.Running(), generation=2,
                                                  now=later))
    ready = _cond(status, "Ready")
    assert ready["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert ready["observedGeneration"] == 2
    assert ready["reason"] == "Running"


@pytest.mark.parametrize("factory, reason", [
    (states.Failed, "Failed"), (states.Crashed, "Crashed"), (states.Cancelled, "Cancelled"),
    (states.TimedOut, "TimedOut"),
])
def test_unsuccessful_terminal_states(factory, reason) -> None:
    status = _apply({}, flowruns.status_patch({}, states.Running(), generation=1, now=T0))
    status = _apply(status, flowruns.status_patch(status, factory("boom"), generation=1,
                                                  now=T0 + timedelta(seconds=2.5)))
    succeeded = _cond(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"], succeeded["message"]) == (
        "False", reason, "boom")
    assert _cond(status, "Ready")["status"] == "False"
    assert status["duration"] == "2.5s"


def test_sub_second_runs_show_milliseconds() -> None:
    status = _apply({}, flowruns.status_patch({}, states.Running(), generation=1, now=T0))
    patch = flowruns.status_patch(status, states.Completed(), generation=1,
                                  now=T0 + timedelta(milliseconds=17))
    assert patch["duration"] == "17ms"


def test_terminal_without_start_has_end_but_no_duration() -> None:
    patch = flowruns.status_patch({}, states.Failed("no deployment"), generation=1, now=T0)
    assert patch["endTime"] == contract.format_time(T0)
    assert "duration" not in patch and "startTime" not in patch


def test_start_time_is_kept_across_retries() -> None:
    status = _apply({}, flowruns.status_patch({}, states.Running(), generation=1, now=T0))
    status = _apply(status, flowruns.status_patch(status, states.AwaitingRetry(),
                                                  generation=1, now=T0 + timedelta(1)))
    patch = flowruns.status_patch(status, states.Running(), generation=1, now=T0 + timedelta(2))
    assert "startTime" not in patch
    assert status["startTime"] == contract.format_time(T0)


def test_history_is_bounded_newest_last() -> None:
    status: dict = {}
    for i in range(30):
        state = states.Scheduled(f"tick {i}") if i % 2 else states.Late(f"tick {i}")
        status = _apply(status, flowruns.status_patch(status, state, generation=1, now=T0))
    history = status["stateHistory"]
    assert len(history) == contract.MAX_STATE_HISTORY
    assert history[-1]["message"] == "tick 29" and history[0]["message"] == "tick 10"


def test_history_is_seeded_from_a_state_written_without_history() -> None:
    old = flowruns.state_to_wire(states.Pending(timestamp=T0))
    patch = flowruns.status_patch({"state": old}, states.Running(), generation=1, now=T0)
    assert [h["name"] for h in patch["stateHistory"]] == ["Pending", "Running"]


def test_foreign_conditions_are_carried_over() -> None:
    foreign = {"type": "Synced", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z",
               "reason": "Ok", "message": ""}
    patch = flowruns.status_patch({"conditions": [foreign]}, states.Running(), generation=1,
                                  now=T0)
    assert foreign in patch["conditions"]
    assert {c["type"] for c in patch["conditions"]} == {"Succeeded", "Ready", "Synced"}


def test_reason_is_always_a_valid_condition_reason() -> None:
    weird = states.State(states.StateType.FAILED, name="9 bad name!", timestamp=T0)
    patch = flowruns.status_patch({}, weird, generation=1, now=T0)
    assert _cond(patch, "Succeeded")["reason"] == "badname"
    hopeless = states.State(states.StateType.FAILED, name="!!!", timestamp=T0)
    patch = flowruns.status_patch({}, hopeless, generation=1, now=T0)
    assert _cond(patch, "Succeeded")["reason"] == "Failed"


def test_extra_fields_pass_through_and_computed_ones_are_refused() -> None:
    patch = flowruns.status_patch({}, states.Pending(), generation=3, now=T0,
                                  jobName="run-1", attempt=1, podName=None)
    assert patch["jobName"] == "run-1" and patch["attempt"] == 1
    assert "podName" in patch and patch["podName"] is None  # merge patch null deletes
    with pytest.raises(ValueError, match="stateHistory"):
        flowruns.status_patch({}, states.Pending(), generation=1, now=T0, stateHistory=[])


def test_patch_body() -> None:
    body = flowruns.patch_body("123", {"state": {"type": "RUNNING"}})
    assert body == {"metadata": {"resourceVersion": "123"}, "status": {"state": {"type": "RUNNING"}}}
    assert "metadata" not in flowruns.patch_body(None, {})


def test_current_state() -> None:
    assert flowruns.current_state({"metadata": {}}) is None
    wire = flowruns.state_to_wire(states.Cancelling(timestamp=T0))
    assert flowruns.current_state({"status": {"state": wire}}).type is states.StateType.CANCELLING
