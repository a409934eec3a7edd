"""The state machine: one transition table and its rules, sub-state names, wire form."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from flowpod import flowruns, states
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


# -- the one acceptance rule (states.accept), as a table ----------------------------------
_W, _A, _R = states.Verdict.WRITE, states.Verdict.ALREADY_THERE, states.Verdict.REFUSE
_ACCEPT_TABLE = [
    # current, proposed, cancel_requested, verdict, reason contains
    (None, states.Running, False, _W, ""),
    (None, states.Completed, False, _W, ""),
    (None, states.Running, True, _R, "spec.cancel"),
    (None, states.Cancelling, True, _W, ""),
    (states.Pending, states.Running, False, _W, ""),
    (states.Scheduled, states.Late, False, _W, ""),
    (states.Running, states.Retrying, False, _W, ""),
    (states.Running, states.AwaitingRetry, False, _W, ""),
    (states.Running, states.Paused, False, _W, ""),
    (states.Paused, states.Suspended, False, _W, ""),
    (states.Paused, states.Running, False, _W, ""),
    (states.Pending, states.Paused, False, _R, "PENDING -> PAUSED"),
    (states.Scheduled, states.Suspended, False, _R, "SCHEDULED -> PAUSED"),
    (states.Completed, states.Running, False, _R, "already ended Completed"),
    (states.Failed, states.Completed, False, _R, "already ended Failed"),
    (states.Crashed, states.Crashed, False, _R, "already ended Crashed"),
    (states.Cancelled, states.Cancelling, True, _R, "already ended Cancelled"),
    (states.Cancelling, states.Running, False, _R, "being cancelled"),
    (states.Cancelling, states.Completed, False, _R, "being cancelled"),
    (states.Cancelling, states.Crashed, False, _R, "being cancelled"),
    (states.Cancelling, states.Cancelling, False, _A, "already being cancelled"),
    (states.Cancelling, states.Cancelling, True, _A, "already being cancelled"),
    (states.Cancelling, states.Cancelled, True, _W, ""),
    (states.Running, states.Running, True, _R, "spec.cancel"),
    (states.Running, states.Paused, True, _R, "spec.cancel"),
    (states.Running, states.Cancelling, True, _W, ""),
    (states.Running, states.Completed, True, _W, ""),
    (states.Running, states.Crashed, True, _W, ""),
]


@pytest.mark.parametrize("current, proposed, cancel_requested, verdict, reason", _ACCEPT_TABLE)
def test_accept_table(current, proposed, cancel_requested, verdict, reason) -> None:
    before = current("before", timestamp=datetime(2025, 1, 1, tzinfo=timezone.utc)) if (
        current) else None
    decision = states.accept(before, proposed("now"), cancel_requested=cancel_requested)
    assert decision.verdict is verdict
    assert reason in decision.reason


def test_accept_recognises_a_write_that_already_landed() -> None:
    # The same state as read back from a FlowRun: millisecond timestamp, bounded message.
    proposed = states.Failed("x" * 10_000, timestamp=datetime(2025, 1, 1, 0, 0, 0, 123456,
                                                                tzinfo=timezone.utc))
    landed = states.State.from_wire({**proposed.to_wire(),
                                     "timestamp": "2025-01-01T00:00:00.123Z",
                                     "message": proposed.message[:100]})
    # Another message: not this write, so the ended run refuses it.
    assert states.accept(landed, proposed).verdict is states.Verdict.REFUSE
    landed = flowruns.state_from_wire(flowruns.state_to_wire(proposed))
    assert states.accept(landed, proposed).verdict is states.Verdict.ALREADY_THERE
    # A final state with a new timestamp is a new write, and refused.
    assert states.accept(landed, states.Failed(proposed.message)).verdict is states.Verdict.REFUSE


def test_accept_agrees_with_the_transition_table() -> None:
    for old in StateType:
        for new in StateType:
            current = states.State(old, timestamp=datetime(2025, 1, 1, tzinfo=timezone.utc))
            verdict = states.accept(current, states.State(new)).verdict
            if old is StateType.CANCELLING and new is StateType.CANCELLING:
                assert verdict is states.Verdict.ALREADY_THERE
            else:
                assert (verdict is states.Verdict.WRITE) == is_transition_allowed(old, new)


def test_named_sub_states_are_constants() -> None:
    assert states.names.LATE == "Late" and states.Late().name == states.names.LATE
    assert states.names.AWAITING_CONCURRENCY_SLOT == "AwaitingConcurrencySlot"
    assert set(states.SUBSTATE_TYPES) <= set(vars(states.names).values())
    for kind in StateType:  # every type's default name is a named constant too
        assert states.State(kind).name in vars(states.names).values()
