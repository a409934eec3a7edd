"""Unit tests of the `flowpod` commands beyond deploy/run/get basics, against the fake API.

Role: drives the real Typer app (typer.testing.CliRunner) with the same injected dependencies
as test_cli.py (fixed clock, fixed random name part, the shared fake API server over
loopback): strict JSON for -p values and every body, time-ordered run names and the
deployment label, `watch`, `resume`, `delete`, `logs --attempt`, ad-hoc `run --entrypoint`,
`get deployments`, plain tables when piped, readable `get RUN`, `-o yaml` without
managedFields, `--version`/`-h`, and `deploy --no-import`. Hermetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from delivery.test_cli import (NOW, _connection, _invoker, api, flow_dir,  # noqa: F401
                               invoke)
from fakeapi import FakeApi, run_object, status_of
from flowpod import contract, states
from flowpod_operator.cli import _naming

RUN = "hello-20300101000100-x1y2"


def _deployment(api: FakeApi, name: str = "hello") -> None:
    api.add({"apiVersion": "flowpod.io/v1alpha1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": "team", "creationTimestamp":
                          "2030-01-01T00:00:00Z",
                          "managedFields": [{"manager": "flowpod-cli"}]},
             "spec": {"entrypoint": "flows/hello.py:hello", "image": "img:1"}})


# -- strict JSON ---------------------------------------------------------------------------
def test_nan_and_infinity_are_sent_as_strings_never_as_invalid_json(invoke, api):
    _deployment(api)
    result = invoke("run", "hello", "-p", "x=NaN", "-p", "y=Infinity", "-p", "z=-Infinity")
    assert result.exit_code == 0, result.output
    (post,) = [r for r in api.requests if r.method == "POST"]
    assert b"NaN" not in post.content.replace(b'"NaN"', b"")  # only as a JSON string
    assert json.loads(post.content)["spec"]["parameters"] == {
        "x": "NaN", "y": "Infinity", "z": "-Infinity"}


def test_nan_inside_a_json_value_is_refused_naming_the_parameter(invoke, api):
    _deployment(api)
    result = invoke("run", "hello", "-p", "xs=[1, NaN]")
    assert result.exit_code == 1
    assert "error: parameter 'xs': NaN is not JSON (got '[1, NaN]')" in result.stderr
    assert "use null, a finite number" in result.stderr
    assert api.bodies("POST") == []


def test_a_nan_flow_default_is_refused_before_it_reaches_the_cluster(invoke, api, flow_dir):
    (flow_dir / "flows" / "nan.py").write_text(
        "from flowpod import flow\n\n@flow\ndef nan(x: float = float('nan')):\n    return x\n")
    result = invoke("deploy", "flows/nan.py:nan", "--name", "nan", "--image", "i")
    assert result.exit_code == 1, result.output
    assert "NaN or Infinity) at spec.parameterSchema.properties.x.default" in result.stderr
    assert [r for r in api.requests if r.method == "PATCH"] == []


# -- names and labels ----------------------------------------------------------------------
def test_run_names_sort_by_creation_time_and_fit_63_characters():
    from datetime import timedelta

    names = [_naming.run_name("d" * 80, NOW + timedelta(seconds=s), "zzzz") for s in (0, 1)]
    names.append(_naming.run_name("d" * 80, NOW + timedelta(days=400), "aaaa"))
    assert names == sorted(names) and all(len(n) <= 63 for n in names)
    assert names[0] == "d" * 43 + "-20300101000100-zzzz"


def test_a_clashing_run_name_is_retried_with_another_random_part(api):
    _deployment(api)
    api.add(run_object("team", RUN))  # the first name the CLI picks is taken
    suffixes = iter(["x1y2", "q9w8"])
    with api.serve() as url:
        invoke = _invoker(api, _connection(url, None, "team", "kc"),
                          random_suffix=lambda: next(suffixes))
        result = invoke("run", "hello")
    assert result.exit_code == 0, result.output
    posts = [json.loads(r.content)["metadata"]["name"] for r in api.requests
             if r.method == "POST"]
    assert posts == [RUN, "hello-20300101000100-q9w8"]
    assert "flowrun.flowpod.io/hello-20300101000100-q9w8 created" in result.stdout
    assert len({_naming.random_suffix() for _ in range(20)}) > 1


# -- run without --watch, watch, ad hoc ----------------------------------------------------
def test_run_without_watch_suggests_flowpod_watch_not_a_second_run(invoke, api):
    _deployment(api)
    result = invoke("run", "hello", "-n", "team")
    assert f"follow it with `flowpod watch {RUN} -n team`" in result.stderr
    assert "flowpod run" not in result.stderr


def test_watch_follows_an_existing_run_and_prints_its_result(invoke, api):
    api.add(run_object("team", "r1", status_of("PENDING", "Pending")))
    api.watch_script["r1"] = [
        status_of("RUNNING", "Running", startTime="2030-01-01T00:00:10Z"),
        status_of("COMPLETED", "Completed", startTime="2030-01-01T00:00:10Z",
                  endTime="2030-01-01T00:00:12Z", result={"value": {"rows": 3}})]
    result = invoke("watch", "r1", "--no-logs")
    assert result.exit_code == 0, result.output
    assert "00:01:00 Running" in result.stderr and "r1 Completed in 2.0s" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == 'result: {"rows": 3}'
    assert api.bodies("POST") == [] and api.bodies("PATCH") == []


def test_run_entrypoint_image_creates_an_ad_hoc_run(invoke, api):
    result = invoke("run", "--entrypoint", "flows/etl.py:load_orders", "--image", "img:2",
                    "-p", "n=1")
    assert result.exit_code == 0, result.output
    (body,) = api.bodies("POST")
    assert body["metadata"]["name"] == "load-orders-20300101000100-x1y2"
    assert "labels" not in body["metadata"]
    assert body["spec"] == {"entrypoint": "flows/etl.py:load_orders", "image": "img:2",
                            "parameters": {"n": 1}}


@pytest.mark.parametrize("args,problem", [
    (["hello", "--image", "i"], "give a Deployment or --entrypoint/--image, not both"),
    (["--entrypoint", "f.py:f"], "nothing to run: give a Deployment, or --entrypoint"),
])
def test_run_needs_one_target(invoke, api, args, problem):
    result = invoke("run", *args)
    assert result.exit_code == 1 and f"error: {problem}" in result.stderr
    assert api.requests == []


# -- resume --------------------------------------------------------------------------------
SCHEMA = {"type": "object", "properties": {"approved": {"type": "boolean"}},
          "required": ["approved"]}


def _paused(api: FakeApi, name: str = "Paused") -> None:
    running = status_of("RUNNING", "Running")["state"]
    paused = status_of("PAUSED", name, "Waiting for input up to 60 s")["state"]
    pause = {"key": "pause-1", "inputSchema": SCHEMA, "timeoutAt": "2030-01-01T00:01:02Z",
             "suspended": name == "Suspended"}
    api.add(run_object("team", "r1", {"state": paused, "stateHistory": [running, paused],
                                      "startTime": "2030-01-01T00:00:02Z", "pause": pause}))


@pytest.mark.parametrize("name,after", [("Paused", ("RUNNING", "Running")),
                                        ("Suspended", ("PENDING", "Pending"))])
def test_resume_sets_spec_resume_for_the_current_pause_and_waits_for_the_operator(
        invoke, api, name, after):
    _paused(api, name)
    resumed = {"key": "pause-1", "input": {"approved": True}, "generation": 2}
    api.watch_script["r1"] = [status_of(*after, resumed=resumed)]
    result = invoke("resume", "r1", "-i", "approved=true")
    assert result.exit_code == 0, result.output
    assert f"flowrun.flowpod.io/r1 resumed ({after[1]})" in result.stdout
    (patch,) = [r for r in api.requests if r.method == "PATCH"]
    assert patch.url.path.endswith("/flowruns/r1"), "spec.resume, for the operator to check"
    assert patch.headers["content-type"] == "application/json-patch+json"
    assert json.loads(patch.content) == [{"op": "add", "path": "/spec/resume", "value": {
        "key": "pause-1", "input": {"approved": True}}}]


def test_resume_prints_the_operators_refusal_and_exits_1(invoke, api):
    _paused(api)
    message = ("Resume of pause 'pause-1' refused: spec.resume.input.approved: 'yes' is not "
               "of type 'boolean'; the run stays paused")
    pause = {"key": "pause-1", "timeoutAt": "2030-01-01T00:01:02Z",
             "refused": {"generation": 2, "message": message}}
    api.watch_script["r1"] = [status_of("PAUSED", "Paused", pause=pause)]
    result = invoke("resume", "r1", "--input", '{"approved": "yes"}')
    assert result.exit_code == 1
    assert f"error: {message}" in result.stderr
    assert "status.pause.inputSchema" in result.stderr


def test_resending_a_refused_resume_prints_the_refusal_at_once(invoke, api):
    _paused(api)
    message = "Resume of pause 'pause-1' refused: spec.resume.input: ..."
    flowrun = api.get("flowruns", "team", "r1")
    flowrun["spec"]["resume"] = {"key": "pause-1", "input": {"approved": "yes"}}
    flowrun["metadata"]["generation"] = 2
    flowrun["status"]["pause"]["refused"] = {"generation": 2, "message": message}
    result = invoke("resume", "r1", "--input", '{"approved": "yes"}')
    assert result.exit_code == 1 and f"error: {message}" in result.stderr
    assert not [r for r in api.requests if r.url.params.get("watch")], "no wait for a change"


@pytest.mark.parametrize("args,problem", [
    (["--input", "{nope"], "--input is not JSON"),
    (["--input", "{}", "-i", "a=1"], "give the input either as --input JSON or as -i"),
    (["-i", "approved"], "input field 'approved' is not KEY=VALUE"),
])
def test_resume_refuses_unreadable_input_before_any_request(invoke, api, args, problem):
    _paused(api)
    result = invoke("resume", "r1", *args)
    assert result.exit_code == 1 and f"error: {problem}" in result.stderr
    assert api.requests == []


@pytest.mark.parametrize("status,problem", [
    (status_of("RUNNING", "Running"), "FlowRun 'r1' in namespace 'team' is not Paused or "
                                      "Suspended (Running); only a paused run can be resumed"),
    (status_of("COMPLETED", "Completed"), "FlowRun 'r1' in namespace 'team' is not Paused or "
                                          "Suspended (Completed)"),
    (None, "FlowRun 'r1' in namespace 'team' is not Paused or Suspended (no state yet)"),
])
def test_resume_refuses_a_run_that_is_not_paused(invoke, api, status, problem):
    api.add(run_object("team", "r1", status))
    result = invoke("resume", "r1")
    assert result.exit_code == 1 and f"error: {problem}" in result.stderr
    assert [r for r in api.requests if r.method == "PATCH"] == []


# -- delete --------------------------------------------------------------------------------
def test_delete_by_name_reports_a_missing_one_and_deletes_the_rest(invoke, api):
    api.add(run_object("team", "a"))
    api.add(run_object("team", "b"))
    result = invoke("delete", "a", "nope", "b")
    assert result.exit_code == 1
    assert "flowrun.flowpod.io/a deleted" in result.stdout
    assert "flowrun.flowpod.io/b deleted" in result.stdout
    assert "error: FlowRun 'nope' in namespace 'team' not found" in result.stderr
    assert api.items("flowruns") == []


def test_delete_deployment_selects_its_runs_by_label(invoke, api):
    for name, deployment in (("a", "hello"), ("b", "other"), ("c", "hello")):
        run = run_object("team", name)
        run["metadata"]["labels"] = {contract.LABEL_DEPLOYMENT: deployment}
        api.add(run)
    result = invoke("delete", "--deployment", "hello")
    assert result.exit_code == 0, result.output
    listing = [r for r in api.requests if r.method == "GET"][0]
    assert listing.url.params["labelSelector"] == f"{contract.LABEL_DEPLOYMENT}=hello"
    assert [o["metadata"]["name"] for o in api.items("flowruns")] == ["b"]


def test_delete_needs_names_or_a_deployment(invoke, api):
    for args in ([], ["a", "--deployment", "hello"]):
        result = invoke("delete", *args)
        assert result.exit_code == 1 and "or give --deployment NAME" in result.stderr
    assert api.requests == []


# -- logs --attempt ------------------------------------------------------------------------
def _pod(name: str, run: str, attempt: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "team", "creationTimestamp": "2030-01-01T00:00:00Z",
        "labels": {contract.LABEL_FLOW_RUN: run, contract.LABEL_ATTEMPT: str(attempt)}}}


def test_logs_attempt_reads_the_pod_of_that_attempt(invoke, api):
    api.add(run_object("team", "r1", status_of("RUNNING", "Running", podName="r1-2-b",
                                               attempt=2)))
    api.add(_pod("r1-1-a", "r1", 1))
    api.add(_pod("r1-2-b", "r1", 2))
    api.add(_pod("r9-1-z", "r9", 1))
    api.logs["r1-1-a"] = ["first attempt crashed"]
    result = invoke("logs", "r1", "--attempt", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "first attempt crashed\n"
    missing = invoke("logs", "r1", "--attempt", "3")
    assert missing.exit_code == 1
    assert ("FlowRun 'r1' in namespace 'team' has no pod of attempt 3; its pods are of "
            "attempt 1, 2") in missing.stderr


# -- get -----------------------------------------------------------------------------------
def test_piped_tables_are_plain_untruncated_one_line_per_run(invoke, api):
    long = "Flow run raised ValueError: " + "x" * 250 + "\nsecond line"
    api.add(run_object("team", "a" * 60, status_of("FAILED", "Failed", long)))
    result = invoke("get")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "\x1b[" not in result.stdout
    assert lines[1].split()[:5] == ["a" * 60, "hello", "Failed", "-", "1m00s"]
    assert lines[1].endswith("x" * 250 + " second line")


def test_get_run_shows_json_parameters_and_no_exit_code_for_a_failed_run(invoke, api):
    api.add(run_object("team", "a", status_of(
        "FAILED", "Failed", "Flow run raised ValueError", exitCode=0, reason="Completed"),
        deploymentName="hello", parameters={"who": "world", "flag": True, "n": None}))
    result = invoke("get", "a")
    assert result.exit_code == 0, result.output
    assert '{"who": "world", "flag": true, "n": null}' in result.stdout
    assert "Exit code" not in result.stdout and "Completed" not in result.stdout
    api.add(run_object("team", "b", status_of("CRASHED", "Crashed", "OOMKilled",
                                              exitCode=137, reason="OOMKilled")))
    crashed = invoke("get", "b").stdout
    assert "Exit code" in crashed and "137" in crashed and "OOMKilled" in crashed


def test_output_yaml_drops_managed_fields(invoke, api):
    run = run_object("team", "a")
    run["metadata"]["managedFields"] = [{"manager": "flowpod-cli", "operation": "Update"}]
    api.add(run)
    _deployment(api)
    one = yaml.safe_load(invoke("get", "a", "-o", "yaml").stdout)
    assert "managedFields" not in one["metadata"] and one["metadata"]["name"] == "a"
    listed = json.loads(invoke("get", "-o", "json").stdout)
    assert "managedFields" not in listed["items"][0]["metadata"]
    deployment = yaml.safe_load(invoke("get", "deployments", "hello").stdout)
    assert "managedFields" not in deployment["metadata"]


def test_get_deployments_lists_them(invoke, api):
    _deployment(api)
    _deployment(api, "etl")
    result = invoke("get", "deployments")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    # Without a status (no schedules, or no operator yet) the schedule columns show '-'.
    assert rows == [["NAME", "ENTRYPOINT", "IMAGE", "SCHEDULE", "NEXT", "ACTIVE", "LAST", "AGE"],
                    ["etl", "flows/hello.py:hello", "img:1", "-", "-", "-", "-", "1m00s"],
                    ["hello", "flows/hello.py:hello", "img:1", "-", "-", "-", "-", "1m00s"]]
    bad = invoke("get", "pods", "x")
    assert bad.exit_code == 1 and "'pods' is not a kind" in bad.stderr


# -- --version, -h -------------------------------------------------------------------------
def test_version_and_short_help_everywhere(invoke):
    from importlib.metadata import version

    assert invoke("--version").stdout.strip() == f"flowpod {version('flowpod')}"
    for command in ("deploy", "run", "watch", "resume", "delete", "cancel", "logs", "get",
                    "crds"):
        result = invoke(command, "-h")
        assert result.exit_code == 0 and "Usage: flowpod " + command in result.stdout


# -- deploy --no-import --------------------------------------------------------------------
NEEDS_PANDAS = "import not_installed_here_xyz\nfrom flowpod import flow\n\n@flow\n" \
               "def etl(n: int):\n    return n\n"


def test_a_flow_needing_a_missing_package_names_it_and_suggests_no_import(invoke, flow_dir):
    (flow_dir / "flows" / "etl.py").write_text(NEEDS_PANDAS)
    result = invoke("deploy", "flows/etl.py:etl", "--name", "etl", "--image", "i", "--dry-run")
    assert result.exit_code == 1
    assert "module 'not_installed_here_xyz' is not installed here" in result.stderr
    assert "--no-import --parameter-schema FILE" in result.stderr


def test_deploy_no_import_takes_the_schema_from_a_file(invoke, flow_dir: Path):
    (flow_dir / "flows" / "etl.py").write_text(NEEDS_PANDAS)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    (flow_dir / "schema.json").write_text(json.dumps(schema))
    args = ["deploy", "flows/etl.py:etl", "--name", "etl", "--image", "i", "--dry-run",
            "--no-import", "--parameter-schema", "schema.json"]
    result = invoke(*args, "-p", "n=2")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.stdout)["spec"]
    assert spec["parameterSchema"] == schema and spec["parameters"] == {"n": 2}
    wrong = invoke(*args, "-p", "n=two")
    assert wrong.exit_code == 1 and "parameter 'n': 'two' is not of type 'integer'" in \
        wrong.stderr
    alone = invoke(*args[:-2])
    assert alone.exit_code == 1 and "--no-import needs --parameter-schema FILE" in alone.stderr


def test_get_run_lists_the_runs_it_started_with_their_states(invoke, api):
    parent = api.add(run_object("team", "p", status_of("RUNNING", "Running")))
    parent["metadata"]["uid"] = "uid-p"
    for name, status, owner in (("p-add-0", status_of("COMPLETED", "Completed"), "uid-p"),
                                ("p-add-1", status_of("RUNNING", "Running"), "uid-p"),
                                ("p-add-2", None, "uid-p"),
                                ("p-add-9", None, "uid-an-earlier-p")):
        child = run_object("team", name, status)
        child["metadata"]["labels"] = {contract.LABEL_PARENT_FLOW_RUN: "p"}
        child["metadata"]["ownerReferences"] = [{"kind": "FlowRun", "name": "p",
                                                 "uid": owner}]
        api.add(child)
    out = invoke("get", "p").stdout
    assert "Child runs  3 (Completed 1, Running 1, no state yet 1)" in out
    assert "p-add-0  Completed" in out and "p-add-1  Running" in out and "p-add-2  -" in out
    assert "p-add-9" not in out  # another run of that name started it
    assert "Child runs" not in invoke("get", "p-add-0").stdout
