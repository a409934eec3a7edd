"""The state machine: one transition table and its rules, sub-state names, wire form."""

from __future__ import annotations

from datetime import timezone

import pytest

from flowpod import states
from flowpod.states import ALLOWED_TRANSITIONS, TERMINAL_TYPES, StateType, is_transition_allowed


def test_terminal_types() -> None:
    assert TERMINAL_TYPES == {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED,
                              StateType.CANCELLED}


def test_table_covers_every_type() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(StateType)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_TYPES))
@pytest.mark.parametrize("new", list(StateType))
def test_terminal_never_goes_anywhere(terminal: StateType, new: StateType) -> None:
    assert not is_transition_allowed(terminal, new)


@pytest.mark.parametrize("new", list(StateType))
def test_cancelling_only_to_cancelled(new: StateType) -> None:
    assert is_transition_allowed(StateType.CANCELLING, new) == (new is StateType.CANCELLED)


@pytest.mark.parametrize("old", list(StateType))
def test_paused_entered_only_from_running(old: StateType) -> None:
    allowed = is_transition_allowed(old, StateType.PAUSED)
    assert allowed == (old in (StateType.RUNNING, StateType.PAUSED))


@pytest.mark.parametrize("kind", [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING])
def test_non_terminal_self_transitions(kind: StateType) -> None:
    assert is_transition_allowed(kind, kind)


def test_anything_may_be_first() -> None:
    assert all(is_transition_allowed(None, t) for t in StateType)


def test_running_may_retry_and_pause() -> None:
    assert is_transition_allowed(StateType.RUNNING, StateType.SCHEDULED)  # AwaitingRetry
    assert is_transition_allowed(StateType.PAUSED, StateType.RUNNING)  # resumed


@pytest.mark.parametrize("name, kind", sorted(states.SUBSTATE_TYPES.items()))
def test_sub_state_factories(name: str, kind: StateType) -> None:
    state = getattr(states, name)("why")
    assert (state.name, state.type, state.message) == (name, kind, "why")


def test_default_name_is_title_cased_type() -> None:
    assert states.State(StateType.CANCELLING).name == "Cancelling"
    assert states.Completed().name == "Completed"


def test_every_state_has_aware_utc_timestamp_and_message() -> None:
    state = states.Failed("broke")
    assert state.timestamp.tzinfo is not None
    assert state.timestamp.utcoffset() == timezone.utc.utcoffset(None)
    assert state.message == "broke"


def test_wire_round_trip() -> None:
    state = states.TimedOut("too slow")
    wire = state.to_wire()
    assert (wire["type"], wire["name"]) == ("FAILED", "TimedOut")
    assert wire["timestamp"].endswith("Z")
    back = states.State.from_wire(wire)
    assert (back.type, back.name, back.message, back.timestamp) == (
        state.type, state.name, state.message, state.timestamp)


def test_from_wire_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="state.type"):
        states.State.from_wire({"type": "DONE"})
    with pytest.raises(ValueError, match="state.timestamp"):
        states.State.from_wire({"type": "FAILED", "timestamp": "yesterday"})


def test_result_raises_the_stored_error() -> None:
    error = KeyError("k")
    assert states.Completed(data=5).result() == 5
    with pytest.raises(KeyError):
        states.Failed(data=error).result()
    assert states.Failed(data=error).result(raise_on_failure=False) is error
    with pytest.raises(RuntimeError, match="Crashed"):
        states.Crashed("gone").result()
