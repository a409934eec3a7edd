"""CEL validation rules of the flowpod CRDs, generated from the engine's own tables.

Role: the API server's half of the state machine. The transition rule on FlowRun
`status.state` is generated from flowpod.states.ALLOWED_TRANSITIONS, so the engine and the
API server enforce one table. Callers: flowpod_operator.crds.resources (attaches the rules to the
pydantic models, which carry them into the schema) and its tests.

Each rule is an `x-kubernetes-validations` entry: {"rule", "message"[, "messageExpression"]}.
"""

from __future__ import annotations

import re

from flowpod import states

__all__ = [
    "ENTRYPOINT_REGEX",
    "ENTRYPOINT_HINT",
    "is_valid_entrypoint",
    "entrypoint_rule",
    "flowrun_form_rule",
    "state_transition_rule",
    "state_kept_rule",
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
    return {
        "rule": "self == oldSelf || " + " || ".join(clauses),
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

