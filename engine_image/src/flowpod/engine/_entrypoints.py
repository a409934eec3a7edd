"""Loading a flow from an entrypoint string.

Role: `load_flow_from_entrypoint("path/to/file.py:fn")` or ("package.module:fn",
or "...:obj.attr") imports the code and returns the Flow, raising EntrypointError
that names the entrypoint and the cause (bad format, missing file or module, error
while importing, missing attribute, not a flow). A file's directory is put on
sys.path first so the file can import its siblings. Callers: flowpod.engine
(its __main__ and the in-pod main, flowpod.engine._in_pod), the CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from flowpod._runtime.flows import Flow
from flowpod.errors import EntrypointError

__all__ = ["load_flow_from_entrypoint"]


def load_flow_from_entrypoint(entrypoint: str) -> Flow:
    """Import and return the Flow an entrypoint names."""
    source, sep, attribute = entrypoint.rpartition(":")
    if not sep or not source or not attribute:
        raise EntrypointError(
            f"Entrypoint {entrypoint!r} is malformed: use 'path/to/file.py:function' or "
            "'package.module:function'.")
    if source.endswith(".py"):
        module = _load_file(entrypoint, source)
    else:
        module = _load_module(entrypoint, source)
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise EntrypointError(
                f"Entrypoint {entrypoint!r}: {source} has no attribute {attribute!r}.") from None
    if not isinstance(obj, Flow):
        raise EntrypointError(
            f"Entrypoint {entrypoint!r} names {type(obj).__name__} {attribute!r}, which is not a "
            "flow; decorate it with @flowpod.flow.")
    return obj


def _load_file(entrypoint: str, source: str) -> Any:
    path = Path(source).resolve()
    if not path.is_file():
        raise EntrypointError(f"Entrypoint {entrypoint!r}: file {str(path)!r} does not exist.")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = f"flowpod_entrypoint_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(
            f"Entrypoint {entrypoint!r}: {str(path)!r} is not importable Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise EntrypointError(
            f"Entrypoint {entrypoint!r}: importing {str(path)!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return module


def _load_module(entrypoint: str, source: str) -> Any:
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name and source.startswith(exc.name):
            raise EntrypointError(
                f"Entrypoint {entrypoint!r}: module {exc.name!r} was not found; check the "
                "name and that its package is installed or on PYTHONPATH.") from exc
        raise EntrypointError(
            f"Entrypoint {entrypoint!r}: importing {source!r} failed: {exc}") from exc
    except Exception as exc:
        raise EntrypointError(
            f"Entrypoint {entrypoint!r}: importing {source!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
