"""Resuming a paused FlowRun: what the operator makes of spec.resume, and of a suspended
run whose pause expired.

Role: pure helpers of flowpod_operator._decisions.deciding. `answer(flowrun)` looks at a
PAUSED run's spec.resume against the pause the engine published (status.pause) and says
whether there is a resume to act on, and whether its input is valid against the pause's
JSON schema (the `jsonschema` library; the message names the field). A spec.resume is
spent once accepted (status.resumed records its generation), so a later pause needs a new
one; one naming another pause's key is stale and ignored; one refused stays refused until
it changes. `deadline(flowrun)` is when a Suspended run's pause expires (no pod waits for
it, so the operator fails it). `decide` turns these into actions for deciding.decide.
Wire names: flowpod.contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from jsonschema import exceptions as schema_errors

from flowpod import contract, states

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import diagnosing as diag
from flowpod_operator._decisions.runs import Run
from flowpod_operator._decisions.validating import schema_violations
from flowpod_operator._decisions.views import Meta

__all__ = ["Answer", "answer", "input_problem", "deadline", "decide"]

_MAX_PROBLEMS = 3
_FIELD = f"spec.{contract.SPEC_RESUME}.input"


@dataclass(frozen=True)
class Answer:
    """The operator's answer to a pending spec.resume: accepted (with `fields` recording
    it in status) or refused (with `message`, recorded in status.pause.refused)."""

    key: str
    accepted: bool
    message: str
    fields: Mapping[str, Any]


def _path(error: schema_errors.ValidationError) -> str:
    where = _FIELD
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def input_problem(schema: Mapping[str, Any] | None, value: Any) -> str | None:
    """None when `value` satisfies `schema` (or no input is awaited), else what is wrong,
    naming each field (at most three problems)."""
    if not schema:
        return None
    try:
        errors = schema_violations(schema, value)
    except schema_errors.SchemaError as exc:
        return f"the input schema the flow published is not valid ({exc.message})"
    if not errors:
        return None
    problems = [f"{_path(e)}: {e.message}" for e in errors[:_MAX_PROBLEMS]]
    more = len(errors) - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _pending(flowrun: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(spec.resume, status.pause) when a resume waits for an answer, else None."""
    resume, pause = contract.resume_of(flowrun), contract.pause_of(flowrun)
    if resume is None or pause is None:
        return None
    generation = Meta(flowrun).generation
    status = flowrun.get("status") or {}
    if (status.get(contract.STATUS_RESUMED) or {}).get("generation") == generation:
        return None  # spent on an earlier pause
    if resume.get("key") and resume.get("key") != pause.get("key"):
        return None  # stale: meant for another pause
    if (pause.get("refused") or {}).get("generation") == generation:
        return None  # refused already; a changed spec.resume is asked again
    return resume, pause


def answer(flowrun: Mapping[str, Any]) -> Answer | None:
    """The answer to the run's pending spec.resume, or None when there is none."""
    pending = _pending(flowrun)
    if pending is None:
        return None
    resume, pause = pending
    key, generation = str(pause.get("key")), Meta(flowrun).generation
    value = resume.get("input")
    schema = pause.get("inputSchema")
    problem = input_problem(schema, value)
    if problem is not None:
        message = f"Resume of pause '{key}' refused: {problem}; the run stays paused"
        refused = {"generation": generation, "message": contract.truncate_message(message)}
        # observedGeneration: the refusal is the operator's answer to this spec.
        return Answer(key, False, message, {contract.STATUS_PAUSE: {**pause, "refused": refused},
                                            "observedGeneration": generation})
    given = " with input" if schema else ""
    fields = {contract.STATUS_PAUSE: None,
              contract.STATUS_RESUMED: contract.resumed_wire(key, value if schema else None,
                                                             generation)}
    return Answer(key, True, f"Resumed (pause '{key}'){given}", fields)


def deadline(flowrun: Mapping[str, Any]) -> datetime | None:
    """When the run's published pause expires (status.pause.timeoutAt), or None."""
    pause = contract.pause_of(flowrun) or {}
    return contract.parse_time_or_none(pause.get("timeoutAt"))


def decide(run: Run, suspended: bool,
           resume_attempt: Callable[[Answer], list[act.Action]]) -> list[act.Action] | None:
    """The actions for a PAUSED run: refuse or accept its spec.resume (Running for a run
    paused in its pod, which watches its FlowRun; `resume_attempt` for a Suspended one, once
    its pod has ended: never two pods at once), or fail a Suspended run past its deadline.
    None when there is nothing of the kind to do."""
    reply = answer(run.o.flowrun)
    if reply is not None and not reply.accepted:
        return [act.WriteStatus((), reply.fields,
                                event=("Warning", "ResumeRefused", reply.message))]
    if reply is None:
        expires = deadline(run.o.flowrun) if suspended else None
        if expires is None:
            return None
        if run.now < expires:
            return [act.Requeue(max((expires - run.now).total_seconds(), 0.0))]
        text = (f"The flow run was suspended and not resumed before "
                f"{contract.format_time(expires)}")
        return [act.WriteStatus((states.Failed(text, timestamp=run.now),),
                                {contract.STATUS_PAUSE: None})]
    if not suspended:
        return [act.WriteStatus((states.Running(reply.message, timestamp=run.now),),
                                reply.fields)]
    d = run.diagnose()
    if d.needs_fresh:
        return [act.Refresh(children=True)]
    if d.phase is not diag.Phase.ENDED:
        return [act.Requeue(1.0)]
    return resume_attempt(reply)
