"""The pydantic model of a FlowRun's hook record (status.hooks).

Role: part of the FlowRun CRD schema (imported by flowpod_operator.crds.resources). It
records which kill-surviving hooks the flow declares (on_crashed, on_cancellation; the
engine writes them with Running), who runs them -- the engine in the run's own pod, or the
operator's hook Job after a hard kill -- and how that went. It is the one part of a final
run's status that may still change (flowpod_operator.crds._cel.hook_record_rule), until
the outcome is Succeeded or Failed. Wire names and values are flowpod.contract's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from flowpod import contract

__all__ = ["HookRecord"]

_Option = Literal[tuple(contract.HOOKS_AFTER_KILL.values())]  # type: ignore[valid-type]
_Runner = Literal[contract.HOOKS_RUNNER_ENGINE, contract.HOOKS_RUNNER_JOB]  # type: ignore[valid-type]
_Outcome = Literal[contract.HOOKS_PENDING, contract.HOOKS_RUNNING,  # type: ignore[valid-type]
                   contract.HOOKS_SUCCEEDED, contract.HOOKS_FAILED]


class HookRecord(BaseModel):
    """The on_crashed / on_cancellation hooks of the run, and whether they ran."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    declared: list[_Option] | None = Field(
        None, max_length=len(contract.HOOKS_AFTER_KILL),
        description="The hooks the flow declares that must run even after a hard kill "
                    "(written by the engine with Running). A run whose engine never started "
                    "declares none: nothing of the flow ran, so no hook runs.")
    runner: _Runner | None = Field(
        None, description="Who runs the hooks: Engine (the run's own process, e.g. after a "
                          "cooperative cancel) or Job (the operator's hook Job, after the "
                          "pod was killed). Claimed once; hooks never run twice for a run.")
    job: str | None = Field(None, max_length=253, description="The hook Job, when runner is Job.")
    outcome: _Outcome | None = Field(
        None, description="Pending (hook Job created), Running, Succeeded or Failed. Frozen "
                          "once Succeeded or Failed.")
    message: str | None = Field(
        None, max_length=contract.MAX_MESSAGE_LENGTH,
        description="What happened, e.g. which hook raised what.")
