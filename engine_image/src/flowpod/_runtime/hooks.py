"""A flow's hooks: calling them, and the claim that makes kill-surviving hooks run once.

Role: `run_hooks` calls a flow's hooks of one option with (flow, flow_run, state) and
returns what went wrong; a hook never changes the run's state. `run_final_hooks` runs the
hooks of a final state. For on_crashed and on_cancellation (contract.HOOKS_AFTER_KILL) a
backend that can also run them elsewhere -- the Kubernetes reporter, whose operator runs
them in a hook Job after a hard kill -- is asked first to claim them for this process
(`claim_hooks`) and told the outcome afterwards (`record_hooks`), so they run exactly once
whichever side gets there first. Callers: flowpod._runtime.flow_engine (in a run, and for
the hooks alone in a hook Job).
"""

from __future__ import annotations

import inspect
from typing import Any

from flowpod import contract, states
from flowpod._runtime.contexts import FlowRunContext

__all__ = ["run_hooks", "run_final_hooks", "outcome_record"]


async def run_hooks(ctx: FlowRunContext, option: str, state: states.State | None) -> list[str]:
    """Call every `option` hook of the run's flow in order; the messages of those that
    raised (each is logged with its traceback, and the next hook still runs)."""
    failures: list[str] = []
    for hook in ctx.flow.hooks[option]:
        name = getattr(hook, "__name__", repr(hook))
        try:
            result = hook(ctx.flow, ctx, state)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a hook never changes the run's state
            ctx.logger.exception("%s hook %s of flow run %r raised; the state stays %r",
                                 option, name, ctx.name, state)
            failures.append(f"{option} hook {name} raised {type(exc).__name__}: {exc}")
    return failures


def outcome_record(option: str, count: int, failures: list[str]) -> dict[str, Any]:
    """status.hooks' outcome and message after `count` hooks of `option` ran."""
    if failures:
        return {"outcome": contract.HOOKS_FAILED,
                "message": contract.truncate_message("; ".join(failures))}
    return {"outcome": contract.HOOKS_SUCCEEDED,
            "message": f"{count} {option} hook(s) ran"}


async def run_final_hooks(ctx: FlowRunContext, option: str, state: states.State) -> None:
    """Run the hooks of final `state` just before it is written (see the module docstring
    for the claim of on_crashed and on_cancellation)."""
    reporter: Any = ctx.services.reporter
    claim = getattr(reporter, "claim_hooks", None)
    if ctx.parent is not None or option not in contract.HOOKS_AFTER_KILL.values():
        claim = None  # only a top-level run's kill hooks can be run by anyone else
    if claim is not None and not await _claimed(ctx, claim, option):
        return
    failures = await run_hooks(ctx, option, state)
    if claim is not None:
        record = outcome_record(option, len(ctx.flow.hooks[option]), failures)
        try:
            await reporter.record_hooks(record)
        except Exception:  # the hooks ran; a lost record must not change the run's state
            ctx.logger.warning("Could not record the outcome of the %s hooks of %r",
                               option, ctx.name, exc_info=True)


async def _claimed(ctx: FlowRunContext, claim: Any, option: str) -> bool:
    """Whether this process may run the hooks. Unsure (the backend cannot be reached) means
    no: the operator's hook Job runs unclaimed hooks once the run has ended, and a hook
    must never run twice."""
    try:
        if await claim(option):
            return True
    except Exception:
        ctx.logger.warning("Could not claim the %s hooks of %r; leaving them to the "
                           "operator", option, ctx.name, exc_info=True)
        return False
    ctx.logger.info("%s hooks of flow run %r are run by the operator's hook Job",
                    option, ctx.name)
    return False
