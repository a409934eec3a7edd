"""README.md stays true to the repository it describes.

Role: the README is the newcomer's only guide, so this checks what can drift: exactly the two
set-up commands, every repository path it names exists, every `flowpod` subcommand and flag it
shows exists in the CLI, every Helm value it names exists in values.yaml, every state type is
in the concepts table, every Crashed cause of the operator has a troubleshooting row, and its
`helm template` command renders as shown with the pinned helm (tests/cluster/build-binaries.sh),
whose built-in Kubernetes version is the one it states.
Hermetic (helm renders offline); called by pytest.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

import flowpod_operator.cli as cli
from delivery import _docs, _helm
from flowpod import states
from flowpod_operator._decisions import waiting

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_exactly_two_setup_commands_make_demo_and_make_test() -> None:
    section = README.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_every_repository_path_it_names_exists() -> None:
    paths = set(re.findall(r"(?<![\w/.-])((?:examples|charts|crds|engine_image|operator|tests)"
                           r"/[\w./-]*|kind-config\.yaml)", README))
    assert len(paths) > 10
    missing = sorted(p for p in paths if not (REPO / p.rstrip(".")).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_every_cli_command_and_flag_it_shows_exists() -> None:
    app = cli.build_app()
    import typer.main

    group = typer.main.get_command(app)
    shown = re.findall(r"^\s+flowpod (\w+)(.*)$", README, re.M)
    assert {name for name, _ in shown} >= {"deploy", "run", "get", "logs", "cancel", "crds",
                                           "operator"}
    for name, rest in shown:
        command = group.commands.get(name)  # type: ignore[attr-defined]
        assert command is not None, f"README shows `flowpod {name}`, which does not exist"
        if name == "operator":
            continue  # its flags belong to the operator's own parser
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        own = re.split(r"[#|>]", rest)[0]  # not the flags of a pipe or a comment
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", own):
            assert flag in known, f"README shows `flowpod {name} {flag}`, which is unknown"


def test_every_helm_value_it_names_exists() -> None:
    values = yaml.safe_load((REPO / "charts/flowpod/values.yaml").read_text())
    named = set(re.findall(r"--set '?([\w.]+)=", README))
    named |= {m for m in re.findall(r"`((?:image|operator|flowRuns|watchNamespaces)[\w.]*)`",
                                    README)}
    assert len(named) > 5
    for dotted in named:
        node = values
        for part in dotted.split("."):
            if part == "":
                continue
            assert isinstance(node, dict) and part in node, f"README names unknown value {dotted}"
            node = node[part]


def test_concepts_table_covers_every_state_type() -> None:
    table = README.split("| State type |", 1)[1].split("\n\n", 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines()[2:]}
    assert rows == {t.value for t in states.StateType}


@pytest.mark.parametrize("reason", ["exited with code", "OOMKilled", "Evicted",
                                    "deadline exceeded", "pod deleted", "node lost",
                                    "ImagePullBackOff", "Unschedulable", "PendingTimeout",
                                    "engine exited without reporting a final state"])
def test_troubleshooting_covers_every_crashed_cause(reason: str) -> None:
    section = README.split("## Troubleshooting", 1)[1]
    assert reason in section
    source = (REPO / "operator/src/flowpod_operator/_decisions/diagnosing.py").read_text()
    # The README quotes the operator's own wording, so a user can search for it.
    assert reason in source, f"the operator no longer says {reason!r}; update the README"


@pytest.mark.parametrize("reason", sorted(waiting.REASONS))
def test_troubleshooting_covers_every_pending_reason(reason: str) -> None:
    table = README.split("| Pending message begins with |", 1)[1].split("\n\n", 1)[0]
    assert f"`{reason}`" in table


def test_helm_template_command_renders_as_shown_with_the_pinned_helm() -> None:
    (shown,) = re.findall(r"`(helm template [^`]+)`", _docs.readme_section("### 2. Helm path"))
    argv = shlex.split(shown)
    assert "--kube-version" not in argv
    out = subprocess.run([str(_helm.helm_path()), *argv[1:]], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, f"`{shown}` failed: {out.stderr}"
    kinds = {doc["kind"] for doc in yaml.safe_load_all(out.stdout) if doc}
    assert {"Deployment", "ServiceAccount", "ClusterRole"} <= kinds, kinds


def test_it_states_the_pinned_helms_built_in_kubernetes_version() -> None:
    section = _docs.readme_section("### 2. Helm path")
    stated = re.search(r"built-in Kubernetes version, which is (\d+\.\d+)", section)
    assert stated, "README.md no longer says which Kubernetes version helm assumes offline"
    assert _helm.built_in_kube_version() == f"v{stated.group(1)}.0"
    plane_minor = ".".join(_helm.KUBE_VERSION.split(".")[:2])
    assert stated.group(1) == plane_minor, "build-binaries.sh builds helm for the plane's version"
