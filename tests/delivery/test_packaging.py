"""pyproject.toml's license metadata, in the current (PEP 639) form, built without warnings.

Role: `pip install -e '.[dev]'` (`make venv`) and the images' `pip wheel .` used to print
setuptools' deprecation wall for a TOML-table `project.license`. This keeps the metadata an SPDX
expression plus `license-files`, pins a setuptools that understands them, and builds the core
metadata with that setuptools and warnings as errors, as the build backend would.
Hermetic; called by pytest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The first setuptools that reads an SPDX `license` string and `license-files`.
PEP_639_SETUPTOOLS = "77.0.0"


def _setuptools_requirement() -> Requirement:
    reqs = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    (setuptools,) = [r for r in reqs if r.name == "setuptools"]
    return setuptools


def test_license_is_a_canonical_spdx_expression() -> None:
    license_ = PYPROJECT["project"]["license"]
    assert isinstance(license_, str), "project.license must be an SPDX string, not a table"
    assert canonicalize_license_expression(license_) == license_ == "Apache-2.0"


def test_license_files_exist_and_hold_the_declared_license() -> None:
    patterns = PYPROJECT["project"]["license-files"]
    matched = [p for pattern in patterns for p in REPO.glob(pattern)]
    assert len(matched) == len(patterns), f"license-files {patterns} matched {matched}"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_build_backend_is_new_enough_for_pep_639() -> None:
    spec = _setuptools_requirement().specifier
    assert not spec.contains("76.1.0"), f"setuptools{spec} admits a pre-PEP 639 release"
    assert spec.contains(PEP_639_SETUPTOOLS)
    # The metadata test below is only as good as the setuptools it runs with.
    assert spec.contains(version("setuptools")), version("setuptools")


def _copy_project(dest: Path) -> None:
    # What the images' build stages copy: enough for setuptools, nothing of the checkout's state.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    for src in ("engine_image/src", "operator/src"):
        shutil.copytree(REPO / src, dest / src, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info"))


def test_core_metadata_builds_without_warnings(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _copy_project(project)
    out = tmp_path / "metadata"
    out.mkdir()
    script = ("import sys; from setuptools import build_meta; "
              "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-W", "error", "-c", script, str(out)],
                            cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    dist_info = result.stdout.strip().splitlines()[-1]
    metadata = (out / dist_info / "METADATA").read_text()
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert not any(h.startswith("License:") for h in headers), "legacy License field"
    assert (out / dist_info / "licenses" / "LICENSE").is_file()
