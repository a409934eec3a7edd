"""The wire contract (flowpod.contract): the names pinned to their values, API paths, RFC 3339
timestamps, the task-run summary's wire form, and that no other module spells a name out."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowpod import contract, reporting, states

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def test_constants_match_the_contract() -> None:
    assert (contract.GROUP, contract.VERSION) == ("flowpod.io", "v1alpha1")
    assert contract.API_VERSION == "flowpod.io/v1alpha1"
    assert (contract.FLOWRUNS, contract.DEPLOYMENTS) == ("flowruns", "deployments")
    assert (contract.KIND_FLOW_RUN, contract.KIND_DEPLOYMENT) == ("FlowRun", "Deployment")
    assert contract.LABEL_FLOW_RUN == "flowpod.io/flow-run"
    assert contract.LABEL_DEPLOYMENT == "flowpod.io/deployment"
    assert contract.ENV_FLOW_RUN_NAME == "FLOWPOD_FLOW_RUN_NAME"
    assert contract.ENV_FLOW_RUN_NAMESPACE == "FLOWPOD_FLOW_RUN_NAMESPACE"
    assert contract.ENV_ENTRYPOINT == "FLOWPOD_ENTRYPOINT"
    assert contract.ENV_PARAMETERS == "FLOWPOD_PARAMETERS"
    assert contract.ENV_ATTEMPT == "FLOWPOD_ATTEMPT"


def test_job_and_pod_names_match_the_contract() -> None:
    assert contract.LABEL_ATTEMPT == "flowpod.io/attempt"
    assert contract.ANNOTATION_FLOW_RUN == "flowpod.io/flow-run"
    assert contract.ANNOTATION_FLOW_RUN_UID == "flowpod.io/flow-run-uid"
    assert contract.ANNOTATION_RETRIES == "flowpod.io/retries"
    assert contract.ANNOTATION_PENDING_TIMEOUT == "flowpod.io/pending-timeout-seconds"
    assert contract.ANNOTATION_GRACE == "flowpod.io/cancellation-grace-period-seconds"
    assert contract.CONTAINER_NAME == "flow"
    assert contract.ENGINE_COMMAND == ("python", "-m", "flowpod.engine")
    assert contract.DEFAULT_SERVICE_ACCOUNT == "flowpod-flow-run"
    assert str(contract.SERVICE_ACCOUNT_DIR) == "/var/run/secrets/kubernetes.io/serviceaccount"
    assert contract.ENV_RESULT_DIR == "FLOWPOD_RESULT_DIR"


def test_exported_names_exist() -> None:
    for name in contract.__all__:
        assert hasattr(contract, name), name


def test_paths() -> None:
    assert contract.flowrun_path("ns", "fr", "status") == (
        "/apis/flowpod.io/v1alpha1/namespaces/ns/flowruns/fr/status")
    assert contract.flowrun_path("ns") == "/apis/flowpod.io/v1alpha1/namespaces/ns/flowruns"
    assert contract.flowrun_path(None) == "/apis/flowpod.io/v1alpha1/flowruns"
    assert contract.deployment_path("ns", "d") == (
        "/apis/flowpod.io/v1alpha1/namespaces/ns/deployments/d")
    with pytest.raises(ValueError, match="subresource"):
        contract.flowrun_path("ns", subresource="status")
    with pytest.raises(ValueError, match="namespace"):
        contract.deployment_path(None, "d")


def test_format_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        contract.format_time(datetime(2025, 1, 1))
    offset = datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert contract.format_time(offset, fraction=False) == "2025-01-01T00:00:00Z"


def test_time_formats() -> None:
    assert contract.format_time(T0) == "2025-01-02T03:04:05.678Z"
    assert contract.format_time(T0, fraction=False) == "2025-01-02T03:04:05Z"
    exact = T0.replace(microsecond=678901)
    assert contract.format_time_exact(exact) == "2025-01-02T03:04:05.678901Z"
    assert contract.parse_time(contract.format_time_exact(exact)) == exact


@pytest.mark.parametrize("text, expected", [
    ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),
    ("2026-03-01t12:00:00z", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),
    ("2026-03-01T12:00:00.123456789Z",
     datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-03-01T14:00:00+02:00", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),
    ("2026-03-01T12:00:00", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),  # no offset: UTC
])
def test_parse_time(text: str, expected: datetime) -> None:
    assert contract.parse_time(text) == expected
    assert contract.parse_time_or_none(text) == expected


def test_unusable_times() -> None:
    with pytest.raises(ValueError, match="RFC 3339.*'yesterday'"):
        contract.parse_time("yesterday")
    assert contract.parse_time_or_none("yesterday") is None
    assert contract.parse_time_or_none("") is None and contract.parse_time_or_none(None) is None


def test_task_run_summary_has_one_bounded_wire_form() -> None:
    failed = tuple(reporting.FailedTaskRun(f"t-{i}", f"t-{i}", states.Failed("x" * 5000))
                   for i in range(contract.MAX_LISTED_RUNS + 30))
    child = reporting.SubflowRun("child-1", "id-1", states.Completed())
    wire = reporting.TaskRunSummary(total=200, counts={"FAILED": 80, "COMPLETED": 120},
                                    failed=failed, failed_total=80, subflows=(child,)).to_wire()
    assert wire["total"] == 200 and wire["failedTotal"] == 80
    assert wire["counts"] == {"FAILED": 80, "COMPLETED": 120}
    assert len(wire["failed"]) == contract.MAX_LISTED_RUNS
    assert set(wire["failed"][0]) == {"name", "state", "message"}  # the CRD's fields
    assert wire["failed"][0]["state"] == "Failed"
    assert len(wire["failed"][0]["message"]) == contract.MAX_MESSAGE_LENGTH
    assert wire["subflows"] == [{"name": "child-1", "state": "Completed", "message": ""}]


# Values distinctive enough that a literal copy anywhere else is a second definition.
_DISTINCTIVE = {value for name in contract.__all__
                if isinstance(value := getattr(contract, name), str)
                and value.startswith(("flowpod.io/", "FLOWPOD_", "flowpod-", "application/"))}
_DISTINCTIVE |= {str(contract.SERVICE_ACCOUNT_DIR), contract.API_PREFIX}


def _string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_no_module_but_the_contract_spells_out_a_wire_name() -> None:
    sources = [*(REPO / "engine_image" / "src").rglob("*.py"),
               *(REPO / "operator" / "src").rglob("*.py")]
    copies = {f"{path.relative_to(REPO)}: {value}" for path in sources
              if path.name != "contract.py" for value in _string_literals(path) & _DISTINCTIVE}
    assert not copies, sorted(copies)
