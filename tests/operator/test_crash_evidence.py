"""A Crashed run's Event carries its evidence: the state's message (the cause), then the
newest lines of status.logTail that fit in the API server's 1 KiB bound of an Event message,
under "(last N lines of output)". Hermetic: the recorder's queue is read directly."""

from __future__ import annotations

import copy
from typing import Any

from flowpod import contract
from flowpod_operator._runtime import eventing

CAUSE = "exited with code 137 (SIGKILL: the process was killed outright)"


def _posted(k8s, final: dict[str, Any], log_tail: list[str] | None) -> list[dict[str, Any]]:
    posted: list[dict[str, Any]] = []
    recorder = eventing.EventRecorder(lambda e: None, clock=lambda: k8s.now)
    recorder._queue.put_nowait = posted.append  # type: ignore[method-assign]
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1)
    recorder.observe(run, baseline=True)
    later = copy.deepcopy(run)
    later["status"].update(state=final, stateHistory=[k8s.state("RUNNING"), final])
    if log_tail is not None:
        later["status"]["logTail"] = log_tail
    recorder.observe(later)
    return posted


def test_the_log_tail_keeps_the_last_20_lines():
    assert contract.MAX_LOG_TAIL_LINES == 20
    lines = [f"line {i}" for i in range(1, 31)]
    assert contract.log_tail(lines) == lines[-20:]


def test_a_crashed_event_ends_with_the_runs_last_lines(k8s):
    tail = [f"line {i}" for i in range(11, 31)]
    (event,) = _posted(k8s, k8s.state("CRASHED", message=CAUSE), tail)
    assert (event["type"], event["reason"]) == ("Warning", "Crashed")
    assert event["message"] == CAUSE + "\n(last 20 lines of output)\n" + "\n".join(tail)


def test_only_the_newest_lines_that_fit_in_1_kib_are_kept(k8s):
    tail = [f"{i:02d} " + "é" * 60 for i in range(20)]  # 123 bytes of UTF-8 each
    (event,) = _posted(k8s, k8s.state("CRASHED", message=CAUSE), tail)
    message = event["message"]
    assert len(message.encode()) <= eventing.MAX_EVENT_MESSAGE_BYTES
    # 64 bytes of cause + 27 of heading + 7 lines of 124 (with their newline) fit, 8 do not.
    assert message == CAUSE + "\n(last 7 lines of output)\n" + "\n".join(tail[-7:])


def test_a_cause_that_fills_the_event_is_cut_and_shown_without_lines(k8s):
    cause = "OOMKilled: " + "ä" * 800  # 1611 bytes
    (event,) = _posted(k8s, k8s.state("CRASHED", message=cause), ["last line"])
    assert event["message"] == cause.encode()[:1024].decode(errors="ignore")
    assert len(event["message"].encode()) <= 1024 and event["message"].endswith("ä")


def test_one_line_is_called_a_line():
    assert eventing.with_log_tail("cause", ["only"]) == "cause\n(last 1 line of output)\nonly"
    assert eventing.with_log_tail("cause", []) == "cause"


def test_other_final_states_keep_their_message_alone(k8s):
    (event,) = _posted(k8s, k8s.state("FAILED", message="ValueError: no"), ["a line"])
    assert event["message"] == "ValueError: no"
    (event,) = _posted(k8s, k8s.state("CRASHED", message=CAUSE), None)
    assert event["message"] == CAUSE
