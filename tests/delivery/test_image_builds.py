"""The image builds that `make images` runs are the README kind path's `docker build` lines.

Role: hermetic. tests/devcluster/flowpod_devcluster/build-images.sh builds with buildah what
the kind path builds with Docker: the same Dockerfiles, tags and build context (the repository
root), and its stand-in base carries exactly the name both Dockerfiles start FROM.
"""

from __future__ import annotations

import re

from delivery import _docs
from flowpod_devcluster import plane

SCRIPT = plane.REPO_ROOT / "tests" / "devcluster" / "flowpod_devcluster" / "build-images.sh"


def _script_builds() -> set[tuple[str, str]]:
    text = SCRIPT.read_text()
    return {(f"flowpod/{name}:dev", dockerfile)
            for name, dockerfile in re.findall(r"^build_image (\S+) (\S+)", text, re.M)}


def test_make_images_builds_what_the_kind_path_builds() -> None:
    builds = [argv for argv in _docs.kind_path_commands() if argv[:2] == ["docker", "build"]]
    assert len(builds) == 2, builds
    documented = set()
    for argv in builds:
        assert argv[-1] == ".", argv  # the repository root is the build context
        documented.add((_docs.option(argv, "-t")[0], _docs.option(argv, "-f")[0]))
    assert _script_builds() == documented


def test_the_stand_in_base_is_named_as_both_dockerfiles_base() -> None:
    bases = {path: re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", path.read_text(), re.M)
             for path in (plane.REPO_ROOT / "engine_image" / "Dockerfile",
                          plane.REPO_ROOT / "operator" / "Dockerfile")}
    assert all(len(found) == 1 for found in bases.values()), bases
    assert len({found[0] for found in bases.values()}) == 1, bases
    # The script reads the engine Dockerfile's ARG rather than repeating the name.
    assert "ARG PYTHON_IMAGE=" in SCRIPT.read_text()
