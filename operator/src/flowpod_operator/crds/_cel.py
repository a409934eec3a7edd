"""CEL validation rules of the flowpod CRDs, generated from the engine's own tables.

Role: the API server's half of the state machine. The transition rule on FlowRun
`status.state` is generated from flowpod.states.ALLOWED_TRANSITIONS, so the engine and the
API server enforce one table. The immutability rules make a FlowRun's spec a record of what
was asked (only `cancel` may still go from false to true) and freeze its status once the run
is final. Callers: flowpod_operator.crds.resources (attaches the rules to the
pydantic models, which carry them into the schema) and its tests.

Each rule is an `x-kubernetes-validations` entry: {"rule", "message"[, "messageExpression"]}.
"""

from __future__ import annotations

import re

from flowpod import contract, states

__all__ = [
    "ENTRYPOINT_REGEX",
    "ENTRYPOINT_HINT",
    "is_valid_entrypoint",
    "entrypoint_rule",
    "flowrun_form_rule",
    "state_transition_rule",
    "state_kept_rule",
    "spec_immutable_rules",
    "cancel_kept_rule",
    "no_cancel_after_end_rule",
    "resume_only_while_paused_rule",
    "FINAL_STATUS_RECORDABLE",
    "RECORDED_REASON_OVERRIDE",
    "HOOK_RECORD",
    "hook_record_rule",
    "final_status_frozen_rule",
]

# `path/to/file.py:flow_fn` or `package.module:flow_fn`. RE2 syntax (CEL's matches()) that
# Python's `re` reads the same way, so the operator can check locally with the exact rule.
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT_REGEX = rf"^(?:[^:\s]+\.py|{_IDENT}(?:\.{_IDENT})*):{_IDENT}$"
ENTRYPOINT_HINT = ("must be 'path/to/file.py:flow_function' or 'package.module:flow_function' "
                   "(a Python file or module, a colon, then the flow function's name)")
_ENTRYPOINT = re.compile(ENTRYPOINT_REGEX)


def is_valid_entrypoint(entrypoint: str) -> bool:
    """The same check the CRD's CEL rule makes, for clients that validate before applying."""
    return bool(_ENTRYPOINT.match(entrypoint))


def entrypoint_rule(field_path: str) -> dict[str, str]:
    # A raw CEL string (r'...') keeps the regex's backslashes literal.
    return {"rule": f"self.matches(r'{ENTRYPOINT_REGEX}')",
            "message": f"{field_path} {ENTRYPOINT_HINT}"}


def flowrun_form_rule() -> dict[str, str]:
    """A FlowRun names a Deployment, or carries entrypoint+image itself (ad hoc), never both."""
    return {
        "rule": ("has(self.deploymentName) ? !has(self.entrypoint) && !has(self.image)"
                 " : has(self.entrypoint) && has(self.image)"),
        "message": ("set exactly one of: spec.deploymentName (run a Deployment), or "
                    "spec.entrypoint together with spec.image (an ad-hoc run)"),
    }


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _ordered(types: frozenset[states.StateType]) -> list[str]:
    # Enum declaration order, so the generated text (and the CRD file) is deterministic.
    return [t.value for t in states.StateType if t in types]


def _explanation(old: states.StateType) -> str:
    allowed = _ordered(states.ALLOWED_TRANSITIONS[old])
    if not allowed:
        return f"{old.value} is terminal"
    return f"{old.value} may only become {', '.join(allowed)}"


def state_transition_rule() -> dict[str, str]:
    """The transition rule for `status.state`, one clause per state type with a way out.

    An unchanged state always passes: writers that only update other status fields
    (exitCode, taskRuns, ...) leave `state` as it was, and that must not count as a
    COMPLETED -> COMPLETED transition.
    """
    clauses = [
        f"(oldSelf.type == '{old.value}' && self.type in {_cel_list(_ordered(allowed))})"
        for old, allowed in ((t, states.ALLOWED_TRANSITIONS[t]) for t in states.StateType)
        if allowed
    ]
    explanations = ", ".join(f"'{t.value}': '{_explanation(t)}'" for t in states.StateType)
    # A same-type change of a final state (a new message) is the frozen-status rule's to
    # refuse: "cannot change from COMPLETED to COMPLETED" would read as nonsense.
    final_kept = f"(oldSelf.type in {_cel_list(_ordered(states.TERMINAL_TYPES))}"
    final_kept += " && self.type == oldSelf.type)"
    return {
        "rule": "self == oldSelf || " + " || ".join([final_kept, *clauses]),
        "message": "status.state.type: this state transition is not allowed",
        "messageExpression": (
            "'status.state.type cannot change from ' + oldSelf.type + ' to ' + self.type"
            " + ' (' + {" + explanations + "}[oldSelf.type] + ')'"
        ),
    }


def state_kept_rule() -> dict[str, str]:
    """At the object root: once a FlowRun has a state, no write may remove it (or status)."""
    return {
        "rule": ("!has(oldSelf.status) || !has(oldSelf.status.state)"
                 " || (has(self.status) && has(self.status.state))"),
        "message": "status.state cannot be removed once set",
        # A root rule would otherwise be reported against "<nil>" instead of the field.
        "fieldPath": ".status.state",
    }



def _unchanged(field: str) -> str:
    """Present in both with the same value, or absent from both (adding counts as a change)."""
    return f"(has(self.{field}) ? has(oldSelf.{field}) && self.{field} == oldSelf.{field}" \
           f" : !has(oldSelf.{field}))"


def spec_immutable_rules(fields: list[str]) -> list[dict[str, str]]:
    """One rule per FlowRun spec field (wire names, `cancel` excluded), on `spec` itself.

    A rule on an optional field only runs when the old and the new object both have it, so
    a field absent at creation could be added later; on `spec`, `has()` sees that too.
    `fieldPath` makes the API server name the field, not just "spec".
    """
    return [{"rule": _unchanged(field),
             "message": (f"spec.{field} cannot be changed, added or removed after the FlowRun "
                         "is created: create a new FlowRun to run something else"),
             "reason": "FieldValueForbidden", "fieldPath": f".{field}"}
            for field in fields]


def cancel_kept_rule() -> dict[str, str]:
    """spec.cancel may go from false to true, never back."""
    return {"rule": ("!has(oldSelf.cancel) || !oldSelf.cancel"
                     " || (has(self.cancel) && self.cancel)"),
            "message": ("spec.cancel cannot go back from true to false: a cancellation, once "
                        "requested, cannot be withdrawn"),
            "reason": "FieldValueForbidden", "fieldPath": ".cancel"}


def no_cancel_after_end_rule() -> dict[str, str]:
    """At the object root: an ended run cannot be cancelled. Its status is frozen, so the
    generation bumped by the change could never be observed, and kstatus would report the
    run in progress forever."""
    final = _cel_list(_ordered(states.TERMINAL_TYPES))
    cancel = "(has({0}.spec.cancel) && {0}.spec.cancel)"
    return {
        "rule": (f"!has(oldSelf.status) || !has(oldSelf.status.state)"
                 f" || !(oldSelf.status.state.type in {final})"
                 f" || {cancel.format('self')} == {cancel.format('oldSelf')}"),
        "message": "spec.cancel cannot change once the run has ended",
        "messageExpression": ("'spec.cancel cannot change once the run has ended ('"
                              " + oldSelf.status.state.type + '): there is nothing to cancel'"),
        "reason": "FieldValueForbidden",
        "fieldPath": ".spec.cancel",
    }


def resume_only_while_paused_rule() -> dict[str, str]:
    """At the object root: spec.resume may be set or changed only while the run is PAUSED
    (Paused or Suspended); removing it is always allowed. A resume of a run that is not
    paused (not started, running, ended) would mean nothing, so it is refused at once."""
    resume = f"{{0}}.spec.{contract.SPEC_RESUME}"
    paused = "has(oldSelf.status) && has(oldSelf.status.state)"
    return {
        "rule": (f"!has({resume.format('self')}) || (has({resume.format('oldSelf')})"
                 f" && {resume.format('self')} == {resume.format('oldSelf')})"
                 f" || ({paused} && oldSelf.status.state.type == 'PAUSED')"),
        "message": "spec.resume can only be set while the run is Paused or Suspended",
        "messageExpression": (
            "'spec.resume can only be set while the run is Paused or Suspended; it is ' + "
            f"({paused} ? oldSelf.status.state.name : 'not started yet')"),
        "reason": "FieldValueForbidden",
        "fieldPath": f".spec.{contract.SPEC_RESUME}",
    }


# What a final run can still gain: how its pod ended. The engine writes the final state
# before its process exits, so the exit code and the pod's reason are only observable
# afterwards; the operator records each once, where it is missing.
FINAL_STATUS_RECORDABLE = ("exitCode", "reason", "podName")
# The Job controller marks an active deadline on the Job after the killed pod has ended, so
# a reason recorded from the pod alone (e.g. Error) may be corrected to this one, once.
RECORDED_REASON_OVERRIDE = "DeadlineExceeded"


# The hook record (status.hooks): after a hard kill the operator's hook Job runs the flow's
# on_crashed / on_cancellation hooks once the run is final, so who runs them and how it went
# are only known afterwards. It may change until its outcome is Succeeded or Failed; the
# runner (the claim that makes hooks run once) and the declared hooks never change.
HOOK_RECORD = "hooks"


def hook_record_rule() -> str:
    """The clause of final_status_frozen_rule for HOOK_RECORD."""
    done = _cel_list(sorted(contract.HOOKS_DONE))
    old, new = f"oldSelf.{HOOK_RECORD}", f"self.{HOOK_RECORD}"
    kept = " && ".join(f"(!has({old}.{f}) || has({new}.{f}) && {new}.{f} == {old}.{f})"
                       for f in ("declared", "runner"))
    return (f"(!has({old}) || has(self.{HOOK_RECORD}) && ((has({old}.outcome) && "
            f"{old}.outcome in {done}) ? {new} == {old} : {kept}))")


def _recorded_once(field: str) -> str:
    kept = f"self.{field} == oldSelf.{field}"
    if field == "reason":
        kept = f"({kept} || self.reason == '{RECORDED_REASON_OVERRIDE}')"
    return f"(!has(oldSelf.{field}) || has(self.{field}) && {kept})"


def final_status_frozen_rule(fields: list[str]) -> dict[str, str]:
    """On `status`: once the state is final, every field (wire names in `fields`) keeps its
    value; only FINAL_STATUS_RECORDABLE may still be filled in, and HOOK_RECORD may change
    until its outcome is final (hook_record_rule).

    A change of the state's type is left to the transition rule, whose message says why.
    Removing the state is the root rule's (state_kept_rule) to refuse.
    """
    final = _cel_list(_ordered(states.TERMINAL_TYPES))
    clauses = ["(!has(self.state) || self.state.type != oldSelf.state.type"
               " || self.state == oldSelf.state)"]
    for field in fields:
        if field == "state":
            continue
        if field == HOOK_RECORD:
            clauses.append(hook_record_rule())
            continue
        clauses.append(_recorded_once(field) if field in FINAL_STATUS_RECORDABLE
                       else _unchanged(field))
    recordable = ", ".join(FINAL_STATUS_RECORDABLE)
    return {
        "rule": (f"!has(oldSelf.state) || !(oldSelf.state.type in {final}) || "
                 + " && ".join(clauses)),
        "message": "status is frozen once the run is final",
        "reason": "FieldValueForbidden",
        "messageExpression": (
            "'status is frozen once the run is final (' + oldSelf.state.type + '): only "
            f"how its pod ended ({recordable}) may still be recorded where missing, and "
            f"the hook record ({HOOK_RECORD}) until its outcome is Succeeded or Failed'"),
    }
