"""Flow parameters: validation from the signature (pydantic) and call binding.

Role: `validate_parameters` checks a parameters mapping against a flow function's
signature -- unknown names, missing required ones, and types through a pydantic
model built once per flow -- filling in defaults; errors raise
ParameterValidationError naming each bad field. pydantic is imported only when a
flow with annotated parameters is first run, to keep `import flowpod` fast.
`call_arguments` turns validated parameters back into (args, kwargs).
Callers: flowpod._runtime.flows (Flow), flowpod._runtime.flow_engine.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Mapping

from flowpod.errors import ParameterValidationError

__all__ = ["ParameterSpec"]

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_PREFIX = "Validation of the flow parameters failed"


class ParameterSpec:
    """The parameters a flow function accepts, and how to check values for them."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.signature = inspect.signature(fn)
        params = self.signature.parameters.values()
        self.named = [p for p in params if p.kind not in _VARIADIC]
        self.var_keyword = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        self._annotated = any(p.annotation is not p.empty for p in self.named)
        self._model: Any = None
        self._fields: dict[str, str] = {}

    def bind_call(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Parameters of a direct call `flow(*args, **kwargs)` (TypeError if they don't fit)."""
        return dict(self.signature.bind_partial(*args, **kwargs).arguments)

    def validate(self, parameters: Mapping[str, Any],
                 validate_types: bool = True) -> dict[str, Any]:
        """Checked parameters with defaults filled in; raises ParameterValidationError."""
        known = {p.name for p in self.named}
        extra = {k: v for k, v in parameters.items() if k not in known}
        if extra and self.var_keyword is None:
            names = ", ".join(sorted(map(repr, extra)))
            raise ParameterValidationError(
                f"{_PREFIX}: unexpected parameter(s) {names}; the flow accepts "
                f"{sorted(known) or 'no parameters'}. Remove them or fix their names.")
        given = {k: v for k, v in parameters.items() if k in known}
        missing = [p.name for p in self.named if p.name not in given and p.default is p.empty]
        if missing:
            raise ParameterValidationError(
                f"{_PREFIX}: missing required parameter(s) {', '.join(map(repr, missing))}. "
                "Give a value for each.")
        if validate_types and self._annotated:
            given = self._validate_types(given)
        values = {p.name: given.get(p.name, p.default) for p in self.named
                  if p.name in given or p.default is not p.empty}
        if extra:
            values[self.var_keyword] = extra  # type: ignore[index]
        return values

    def call_arguments(self, values: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """(args, kwargs) to call the function with validated parameter values."""
        bound = inspect.BoundArguments(self.signature, dict(values))  # type: ignore[arg-type]
        return bound.args, bound.kwargs

    def _validate_types(self, given: dict[str, Any]) -> dict[str, Any]:
        import pydantic

        model = self.model()
        try:
            validated = model.model_validate(given)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors())
            raise ParameterValidationError(f"{_PREFIX}: {problems}. Fix these values.") from None
        return {name: getattr(validated, field) for field, name in self._fields.items()
                if name in given}

    def model(self) -> Any:
        """The pydantic model of the named parameters (built once): what values are
        validated with, and whose JSON schema `flowpod deploy` writes."""
        import pydantic

        return self._model or self._build_model(pydantic)

    def _build_model(self, pydantic: Any) -> Any:
        # Internal field names with the parameter name as alias: parameters may be
        # called `json` or `model_config`, which would clash with BaseModel's own names.
        self._fields = {f"p{i}": p.name for i, p in enumerate(self.named)}
        try:  # resolves string annotations (`from __future__ import annotations`)
            hints = typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward references: the annotations as written
            hints = {}
        fields = {
            f"p{i}": (hints.get(p.name, Any if p.annotation is p.empty else p.annotation),
                      pydantic.Field(... if p.default is p.empty else p.default, alias=p.name))
            for i, p in enumerate(self.named)
        }
        config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        self._model = pydantic.create_model("FlowParameters", __config__=config, **fields)
        return self._model
