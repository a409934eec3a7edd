"""Static checks of engine_image/Dockerfile and operator/Dockerfile (no Docker engine here).

Role: proves what the images promise (ARCHITECTURE.md, "Two images") without building them:
a pinned slim Python base, a numeric non-root USER, the ENTRYPOINT the operator's Jobs and
the Helm chart rely on, COPY sources that exist in the build context (the repository root),
and an engine image that carries neither kopf nor the operator package. Parsing is done by dockerfile-parse, not by hand.
Called by pytest (hermetic; the wheel test needs pip's usual package index for the build
backend, as `make venv` does).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine_image" / "Dockerfile"
OPERATOR = REPO / "operator" / "Dockerfile"
# A patch-pinned slim Python tag (optionally with a digest); "python:3.11-slim" floats.
PINNED_BASE = re.compile(r"^python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")


def _stages(path: Path) -> list[list[dict]]:
    """Instructions grouped by build stage (FROM starts a stage), ARGs substituted."""
    parser = DockerfileParser(str(path))
    stages: list[list[dict]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(item)
    return stages


def _global_args(path: Path) -> dict[str, str]:
    args = {}
    for item in DockerfileParser(str(path)).structure:
        if item["instruction"] == "FROM":
            break
        if item["instruction"] == "ARG" and "=" in item["value"]:
            key, value = item["value"].split("=", 1)
            args[key.strip()] = value.strip()
    return args


def _from_image(value: str, args: dict[str, str]) -> tuple[str, str | None]:
    words = value.split()
    image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
    alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
    return image, alias


def _copy_sources(item: dict) -> list[str] | None:
    """The context paths a COPY/ADD reads; None when it copies from another stage."""
    words = shlex.split(item["value"])
    if any(w.startswith("--from=") for w in words):
        return None
    plain = [w for w in words if not w.startswith("--")]
    return plain[:-1]


@pytest.mark.parametrize("path", [ENGINE, OPERATOR], ids=["engine", "operator"])
def test_every_from_is_a_pinned_slim_python_or_an_earlier_stage(path: Path) -> None:
    args, aliases = _global_args(path), set()
    for stage in _stages(path):
        image, alias = _from_image(stage[0]["value"], args)
        assert image in aliases or PINNED_BASE.match(image), (
            f"{path.name}: FROM {image} is not a patch-pinned slim Python image")
        if alias:
            aliases.add(alias)


@pytest.mark.parametrize("path", [ENGINE, OPERATOR], ids=["engine", "operator"])
def test_final_stage_runs_as_numeric_non_root_user(path: Path) -> None:
    users = [i["value"] for i in _stages(path)[-1] if i["instruction"] == "USER"]
    assert users, f"{path.name}: the final stage sets no USER (would run as root)"
    uid = users[-1].split(":")[0]
    # Numeric, because the kubelet can only verify runAsNonRoot against a numeric UID.
    assert uid.isdigit() and int(uid) != 0, f"{path.name}: USER {users[-1]!r}"


@pytest.mark.parametrize("path,module,sources", [
    (ENGINE, "flowpod.engine", ["engine_image/src/flowpod/engine.py",
                                "engine_image/src/flowpod/engine/__main__.py"]),
    (OPERATOR, "flowpod_operator", ["operator/src/flowpod_operator/__main__.py"]),
], ids=["engine", "operator"])
def test_entrypoint_is_the_module_jobs_and_chart_run(path: Path, module: str,
                                                     sources: list[str]) -> None:
    entry = [i["value"] for i in _stages(path)[-1] if i["instruction"] == "ENTRYPOINT"]
    assert entry, f"{path.name}: no ENTRYPOINT"
    # Exec form only: a shell-form entrypoint would swallow SIGTERM in /bin/sh.
    assert json.loads(entry[-1]) == ["python", "-m", module]
    assert any((REPO / s).exists() for s in sources), (
        f"`python -m {module}` has no source yet: none of {sources} exists")


@pytest.mark.parametrize("path", [ENGINE, OPERATOR], ids=["engine", "operator"])
def test_every_copy_source_exists_in_the_build_context(path: Path) -> None:
    for stage in _stages(path):
        for item in stage:
            if item["instruction"] not in {"COPY", "ADD"}:
                continue
            sources = _copy_sources(item)
            for src in sources or []:
                assert (REPO / src).exists(), (
                    f"{path.name} line {item['startline'] + 1}: COPY source {src!r} is missing "
                    f"from the build context (the repository root)")


@pytest.mark.parametrize("path", [ENGINE, OPERATOR], ids=["engine", "operator"])
def test_workdir_holds_the_examples(path: Path) -> None:
    final = _stages(path)[-1]
    workdirs = [i["value"] for i in final if i["instruction"] == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/opt/flowpod"
    copies = [_copy_sources(i) for i in final if i["instruction"] == "COPY"]
    assert ["examples/"] in copies, "examples/ must be copied into the WORKDIR"


def test_engine_image_never_installs_the_operator() -> None:
    text = "\n".join(i["value"] for s in _stages(ENGINE) for i in s
                     if i["instruction"] in {"RUN", "COPY", "ADD"})
    assert "[operator" not in text and "kopf" not in text
    assert "operator/" not in text, "the engine image must not copy operator sources"


def test_operator_image_installs_operator_and_cli_extras() -> None:
    runs = [i["value"] for i in _stages(OPERATOR)[-1] if i["instruction"] == "RUN"]
    assert any("[operator,cli]" in r and "pip install" in r for r in runs)


def _build_stage_wheel(tmp_path: Path, dockerfile: Path) -> Path:
    """Recreate the build stage: copy exactly its COPY sources, run its `pip wheel`."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for item in _stages(dockerfile)[0]:
        if item["instruction"] != "COPY":
            continue
        sources = _copy_sources(item)
        assert sources is not None
        for src in sources:
            origin, target = REPO / src, ctx / src
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, target)
    out = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir",
                    str(out), str(ctx)], check=True, capture_output=True, timeout=240)
    (wheel,) = out.glob("flowpod-*.whl")
    return wheel


def test_engine_wheel_carries_no_operator_code_and_no_kopf(tmp_path: Path) -> None:
    wheel = _build_stage_wheel(tmp_path, ENGINE)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.startswith("flowpod/") for n in names)
    assert not any(n.startswith("flowpod_operator/") for n in names), names
    unconditional = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                     if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert unconditional, "the engine needs its base dependencies"
    for forbidden in ("kopf", "kubernetes-asyncio", "kubernetes_asyncio", "typer"):
        assert not any(r.lower().startswith(forbidden) for r in unconditional), unconditional


def test_operator_wheel_carries_both_packages(tmp_path: Path) -> None:
    wheel = _build_stage_wheel(tmp_path, OPERATOR)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(n.startswith("flowpod_operator/") for n in names)
    assert any(n.startswith("flowpod/") for n in names)


def _third_party_imports(root: Path, top_level_only: bool = False) -> set[str]:
    """Top-level modules imported anywhere under ``root`` that are not stdlib or our own
    (with top_level_only: only by a module's own top-level statements)."""
    found: set[str] = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in (tree.body if top_level_only else ast.walk(tree)):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names
            # Our own packages: which of them the engine may reach is import-linter's check.
            and m not in {"flowpod", "flowpod_operator", "flowpod_kube", "__future__"}}


def _closure(requirements: list[str]) -> set[str]:
    """Normalised names of the given distributions and everything they require."""
    todo = [Requirement(r).name for r in requirements]
    seen: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for req in importlib.metadata.requires(name) or []:
            parsed = Requirement(req)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                todo.append(parsed.name)
    return seen


@pytest.mark.parametrize("source,extras,on_use", [
    ("engine_image/src", [], ["dask"]),
    ("operator/src", ["operator", "cli"], []),
], ids=["engine-image", "operator-image"])
def test_image_installs_every_third_party_module_its_code_imports(
        source: str, extras: list[str], on_use: list[str]) -> None:
    # The images install `.` (engine) and `.[operator,cli]` (operator): a module imported by
    # the code but provided only by the dev extra would crash the pod at import time. The
    # `on_use` extras are optional for the image: their modules may be imported only inside
    # functions (DaskTaskRunner imports dask.distributed when it starts, and says which extra
    # to install when it is missing), never by a module's top level.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    installed = _closure(requirements)
    optional = _closure([r for extra in on_use for r in project["optional-dependencies"][extra]])
    providers = importlib.metadata.packages_distributions()

    def provided(module: str, by: set[str]) -> bool:
        return any(canonicalize_name(d) in by for d in providers.get(module, []))

    imported = _third_party_imports(REPO / source)
    missing = {module: providers.get(module, ["?"]) for module in imported
               if not provided(module, installed) and not provided(module, optional)}
    assert not missing, (f"{source} imports {sorted(missing)} (from {missing}), which "
                         f"`pip install .{'[' + ','.join(extras) + ']' if extras else ''}` does "
                         f"not install: add the distribution to pyproject.toml")
    at_import = {module for module in _third_party_imports(REPO / source, top_level_only=True)
                 if not provided(module, installed)}
    assert not at_import, (f"{source} imports {sorted(at_import)} at module level, but the "
                           f"image does not install them (extras {on_use} are optional): "
                           "import them where they are used")
