"""The test node's image map: which container images it can "pull", and what they become.

Used by containerrunning to turn a container's `image` into a local runtime (a Python virtual
environment plus the image's defaults); an image not in the map cannot be pulled, and the
container then waits with ErrImagePull / ImagePullBackOff like on a real node.

File format (`--image-map FILE`, JSON):

    {"includeDefaults": true,            # optional: append the built-in entries after these
     "images": [
       {"match": "myorg/tool:*",         # fnmatch glob over the image reference, first wins
        "venv": "../.venv",              # optional; absent/null = the node's own environment;
                                         #   relative paths are relative to the map file
        "command": ["python", "-m", "tool"],  # optional ENTRYPOINT
        "args": [],                      # optional CMD
        "workingDir": "/srv",            # optional WORKDIR; absent = a per-pod scratch dir
        "env": {"PYTHONUNBUFFERED": "1"}}  # optional image ENV
     ]}

The built-in map (see `default_entries`) covers python:*, flowpod/engine:*, flowpod/operator:*
and ghcr.io/flowpod/* — all mapped to the node's own virtual environment.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Image", "ImageMap", "default_entries", "load"]

_FLOWPOD_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@dataclass(frozen=True)
class Image:
    """What a mapped image runs as: a venv and the image's ENTRYPOINT/CMD/WORKDIR/ENV."""

    reference: str
    venv: Path
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return f"venv://{self.venv}"

    @property
    def bin_dir(self) -> Path:
        return self.venv / "bin"


@dataclass(frozen=True)
class _Entry:
    match: str
    venv: Path
    command: tuple[str, ...]
    args: tuple[str, ...]
    working_dir: str | None
    env: Mapping[str, str]


class ImageMap:
    """An ordered list of glob entries; the first entry matching an image decides."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._entries = list(entries)

    def resolve(self, reference: str) -> Image | None:
        for candidate in _spellings(reference):
            for entry in self._entries:
                if fnmatch.fnmatchcase(candidate, entry.match):
                    return Image(reference=reference, venv=entry.venv, command=entry.command,
                                 args=entry.args, working_dir=entry.working_dir, env=entry.env)
        return None

    @property
    def patterns(self) -> list[str]:
        return [e.match for e in self._entries]


def _spellings(reference: str) -> list[str]:
    # "python:3.11" and "docker.io/library/python:3.11" name the same image.
    names = [reference]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if reference.startswith(prefix):
            names.append(reference[len(prefix):])
    return names


def _node_venv() -> Path:
    # The node's own interpreter environment: sys.executable lives in <venv>/bin.
    return Path(sys.executable).parent.parent


def default_entries(workdir: Path) -> list[dict]:
    """The built-in map. ``workdir`` is where flowpod images start (the repository root),
    so flow entrypoints like examples/hello/flow.py resolve as in the real images."""
    flowpod = {"env": _FLOWPOD_ENV, "workingDir": str(workdir)}
    return [
        # The python images have no ENTRYPOINT and CMD ["python3"].
        {"match": "python:*", "args": ["python3"], "env": {"LANG": "C.UTF-8"}},
        {"match": "flowpod/engine:*", "command": ["python", "-m", "flowpod.engine"], **flowpod},
        {"match": "ghcr.io/flowpod/engine:*", "command": ["python", "-m", "flowpod.engine"],
         **flowpod},
        {"match": "flowpod/operator:*", "command": ["python", "-m", "flowpod_operator"],
         **flowpod},
        {"match": "ghcr.io/flowpod/operator:*", "command": ["python", "-m", "flowpod_operator"],
         **flowpod},
        {"match": "ghcr.io/flowpod/*", **flowpod},
    ]


def _strings(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"{where}: must be a list of strings")
    return tuple(raw)


def _entry(raw: object, index: int, base: Path) -> _Entry:
    where = f"image map images[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("match"), str):
        raise ValueError(f"{where}: each entry needs a string 'match' glob, e.g. 'python:*'")
    unknown = set(raw) - {"match", "venv", "command", "args", "workingDir", "env"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    venv = _node_venv() if raw.get("venv") is None else (base / str(raw["venv"])).resolve()
    env = raw.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{where}.env: must map names to strings")
    return _Entry(match=raw["match"], venv=venv, command=_strings(raw.get("command"),
                  f"{where}.command"), args=_strings(raw.get("args"), f"{where}.args"),
                  working_dir=raw.get("workingDir"), env=dict(env))


def load(path: Path | None, *, workdir: Path) -> ImageMap:
    """The map in ``path`` (JSON, format in the module docstring), or the built-in one."""
    if path is None:
        raw_entries, base = default_entries(workdir), workdir
    else:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError(f"{path}: an image map is an object with an 'images' list")
        raw_entries, base = list(data["images"]), path.resolve().parent
        if data.get("includeDefaults"):
            raw_entries += default_entries(workdir)
    return ImageMap([_entry(raw, i, base) for i, raw in enumerate(raw_entries)])
