"""Unit tests of `flowpod retry`, against the shared fake API server: the new run's name,
spec, labels and annotation; --from-failure's reuse of the old run's results; and the
refusals (a run that has not ended, a run that kept no results). Hermetic."""

from __future__ import annotations

import pytest

from delivery.test_cli import api, invoke  # noqa: F401
from fakeapi import FakeApi, run_object, status_of
from flowpod import contract
from flowpod_operator.cli import _retry

FAILED = status_of("FAILED", "Failed", "Task run 'last-0' failed")


def _deployment(api: FakeApi, **spec) -> None:
    api.add({"apiVersion": contract.API_VERSION, "kind": "Deployment",
             "metadata": {"name": "etl", "namespace": "team"},
             "spec": {"entrypoint": "flows/etl.py:etl", "image": "img:1", **spec}})


def _old(api: FakeApi, name: str = "etl-run", status=FAILED, **spec) -> None:
    run = run_object("team", name, status, **(spec or {"deploymentName": "etl"}))
    run["metadata"]["uid"] = "uid-old"
    run["metadata"]["labels"] = {contract.LABEL_DEPLOYMENT: "etl",
                                 contract.LABEL_SCHEDULE: "nightly"}
    run["spec"].update(parameters={"n": 3}, cancel=True, scheduledTime="2030-01-01T00:00:00Z")
    api.add(run)


def test_retry_creates_a_new_run_with_the_same_spec_labelled_as_a_retry(invoke, api):
    _deployment(api)
    _old(api)
    result = invoke("retry", "etl-run")
    assert result.exit_code == 0, result.output
    (body,) = api.bodies("POST")
    assert body["metadata"] == {
        "name": "etl-run-retry-1",
        "labels": {contract.LABEL_RETRY_OF: "etl-run", contract.LABEL_DEPLOYMENT: "etl"},
        "annotations": {contract.ANNOTATION_RETRY_OF: "etl-run"}}
    # Same Deployment and parameters; not cancelled, not scheduled in the past, no reuse.
    assert body["spec"] == {"deploymentName": "etl", "parameters": {"n": 3}}
    assert "flowrun.flowpod.io/etl-run-retry-1 created, retrying etl-run" in result.stdout


def test_a_second_retry_takes_the_next_number(invoke, api):
    _deployment(api)
    _old(api)
    api.add(run_object("team", "etl-run-retry-1"))
    assert invoke("retry", "etl-run").exit_code == 0
    names = [b["metadata"]["name"] for b in api.bodies("POST")]
    assert names[-1] == "etl-run-retry-2"


def test_from_failure_names_the_old_run_and_pins_its_storage(invoke, api):
    _deployment(api, resultStorage="file:///mnt/results")
    _old(api)
    result = invoke("retry", "etl-run", "--from-failure")
    assert result.exit_code == 0, result.output
    (body,) = api.bodies("POST")
    assert body["spec"] == {
        "deploymentName": "etl", "parameters": {"n": 3},
        "resultStorage": "file:///mnt/results",
        "reuseResultsFrom": {"flowRunName": "etl-run", "flowRunUid": "uid-old"}}
    assert "reusing its completed tasks" in result.stdout


def test_from_failure_of_an_adhoc_run_uses_the_runs_own_storage(invoke, api):
    _old(api, entrypoint="f.py:f", image="img:2", resultStorage="s3://b/p")
    assert invoke("retry", "etl-run", "--from-failure").exit_code == 0
    (body,) = api.bodies("POST")
    assert body["spec"]["resultStorage"] == "s3://b/p"
    assert body["spec"]["reuseResultsFrom"]["flowRunUid"] == "uid-old"


def test_from_failure_is_refused_when_the_old_run_kept_no_results(invoke, api):
    _deployment(api)
    _old(api)
    result = invoke("retry", "etl-run", "--from-failure")
    assert result.exit_code == 1
    assert ("error: FlowRun 'etl-run' kept no task results to reuse: it had no result "
            "storage (spec.resultStorage, on the run or its Deployment)") in result.stderr
    assert "rerun every task with `flowpod retry etl-run`" in result.stderr
    assert api.bodies("POST") == []


@pytest.mark.parametrize("status,shown", [
    (status_of("RUNNING", "Running"), "Running"), (None, "no state yet")])
def test_a_run_that_has_not_ended_is_not_retried(invoke, api, status, shown):
    _deployment(api)
    _old(api, status=status)
    result = invoke("retry", "etl-run")
    assert result.exit_code == 1
    assert (f"error: FlowRun 'etl-run' in namespace 'team' has not ended ({shown}); only a "
            f"finished run can be retried") in result.stderr
    assert api.bodies("POST") == []


def test_retry_names_fit_63_characters():
    name = _retry.retry_name("r" * 70, 12)
    assert len(name) == 63 and name.endswith("-retry-12")


def test_retry_has_help(invoke):
    result = invoke("retry", "-h")
    assert result.exit_code == 0 and "Usage: flowpod retry" in result.stdout
    assert "--from-failure" in result.stdout
