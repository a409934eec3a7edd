"""Loading flows from entrypoints, and `python -m flowpod.engine` outside a pod."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowpod import Flow
from flowpod.engine import load_flow_from_entrypoint
from flowpod.errors import EntrypointError

FLOW_FILE = textwrap.dedent('''
    from flowpod import flow, task
    from helper_module import OFFSET

    @task
    def inc(x: int) -> int:
        return x + OFFSET

    @flow
    def pipeline(x: int = 1) -> int:
        return inc(x)

    class Holder:
        nested = pipeline

    not_a_flow = 42
''')


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    (tmp_path / "helper_module.py").write_text("OFFSET = 100\n")
    path = tmp_path / "my_flows.py"
    path.write_text(FLOW_FILE)
    return path


def test_load_from_file_and_attribute_path(flow_file: Path) -> None:
    loaded = load_flow_from_entrypoint(f"{flow_file}:pipeline")
    assert isinstance(loaded, Flow) and loaded(x=2) == 102
    assert load_flow_from_entrypoint(f"{flow_file}:Holder.nested").name == "pipeline"


def test_load_from_module_path() -> None:
    loaded = load_flow_from_entrypoint("flowpod_test_entry_module:the_flow")
    assert loaded() == "from a module"


@pytest.fixture(autouse=True)
def _module_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "modules"
    package.mkdir()
    (package / "flowpod_test_entry_module.py").write_text(
        "from flowpod import flow\n@flow\ndef the_flow():\n    return 'from a module'\n")
    (package / "broken_module.py").write_text("raise RuntimeError('import-time bug')\n")
    monkeypatch.syspath_prepend(str(package))


@pytest.mark.parametrize("entrypoint, message", [
    ("no_colon_here", "malformed"),
    ("missing/file.py:fn", "does not exist"),
    ("no_such_module_xyz:fn", "module 'no_such_module_xyz' was not found"),
    ("broken_module:fn", "import-time bug"),
    ("flowpod_test_entry_module:nope", "has no attribute 'nope'"),
])
def test_entrypoint_errors_name_the_entrypoint_and_cause(entrypoint: str, message: str) -> None:
    with pytest.raises(EntrypointError) as error:
        load_flow_from_entrypoint(entrypoint)
    assert entrypoint in str(error.value) and message in str(error.value)


def test_entrypoint_that_is_not_a_flow(flow_file: Path) -> None:
    with pytest.raises(EntrypointError, match="not a flow"):
        load_flow_from_entrypoint(f"{flow_file}:not_a_flow")


def _engine_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowpod.engine", *args],
                          capture_output=True, text=True, timeout=60)


def test_python_m_flowpod_engine_runs_a_flow(flow_file: Path, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    done = _engine_main("--entrypoint", f"{flow_file}:pipeline", "--parameters", '{"x": 5}',
                        "--journal", str(journal))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["type"] == "COMPLETED"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    names = [e.get("state", {}).get("name") for e in events]
    assert [n for n in names if n] == ["Pending", "Running", "Completed"]


def test_python_m_flowpod_engine_reports_failures(flow_file: Path) -> None:
    invalid = _engine_main("--entrypoint", f"{flow_file}:pipeline", "--parameters", '{"x": "a"}')
    assert invalid.returncode == 1
    assert "Validation of the flow parameters failed" in invalid.stdout
    missing = _engine_main("--entrypoint", f"{flow_file}:nope")
    assert missing.returncode == 2 and "has no attribute 'nope'" in missing.stderr
    bad_json = _engine_main("--entrypoint", f"{flow_file}:pipeline", "--parameters", "[1]")
    assert bad_json.returncode == 2 and "JSON object" in bad_json.stderr
