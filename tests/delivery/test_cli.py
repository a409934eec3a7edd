"""Unit tests of the `flowpod` CLI against an in-memory API (httpx.MockTransport).

Role: drives the real Typer commands (typer.testing.CliRunner) with injected dependencies
(flowpod_operator.cli.Deps): the API is the shared fake API server (tests/fakeapi.py), reached
over loopback by the CLI's real kubernetes-asyncio client; the clock is fixed.
Checks what is sent (server-side apply, generateName, merge patches), what is shown (states,
logs, tables), exit codes, and that user errors name the object and the fix without a
traceback. Hermetic; the real-cluster CLI tests are in test_cli_cluster.py.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from kubernetes_asyncio import client
from typer.testing import CliRunner

import flowpod_operator.cli as cli
from fakeapi import FakeApi, run_object, status_of
from flowpod import contract
from flowpod_kube.connecting import Connection
from flowpod_operator.crds import crdgen

NOW = datetime(2030, 1, 1, 0, 1, 0, tzinfo=timezone.utc)
FLOW_FILE = textwrap.dedent("""
    from typing import Literal
    from flowpod import flow

    @flow
    def greet(name: str, times: int = 1, mode: Literal["loud", "quiet"] = "quiet"):
        return name * times

    @flow
    def tagged(name: str, **tags):
        return tags
""")


def _connection(server: str, token: str | None, namespace: str, source: str) -> Connection:
    configuration = client.Configuration(host=server)
    if token:
        configuration.api_key["BearerToken"] = f"Bearer {token}"
    return Connection(configuration, namespace, source)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def invoke(api: FakeApi, tmp_path: Path):
    """Run `flowpod ARGS` against ``api``; the kubeconfig names namespace 'team'."""
    with api.serve() as url:
        yield _invoker(api, _connection(url, "t0k", "team", "test kubeconfig"))


def _invoker(api: FakeApi, connection: Connection, **more):
    async def load_config(target) -> Connection:
        return connection

    deps = cli.Deps(**{"load_config": load_config, "clock": lambda: NOW,
                       "out": Console(width=200, soft_wrap=True),
                       "err": Console(width=200, soft_wrap=True, stderr=True),
                       "operator_main": lambda argv: api.requests.append(argv) or 0,
                       "random_suffix": lambda: "x1y2", **more})

    def run(*args: str):
        result = CliRunner().invoke(cli.build_app(deps), list(args), catch_exceptions=False)
        assert "Traceback" not in result.output
        return result

    return run


@pytest.fixture
def flow_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "greet.py").write_text(FLOW_FILE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_public_surface() -> None:
    assert sorted(cli.__all__) == ["CliError", "Deps", "build_app", "main"]


def test_deploy_dry_run_derives_parameter_schema_without_a_cluster(invoke, api, flow_dir):
    result = invoke("deploy", "flows/greet.py:greet", "--name", "greet", "--image",
                    "flowpod/engine:dev", "-p", "times=3", "--dry-run", "-o", "yaml")
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    assert api.requests == []
    assert manifest["kind"] == "Deployment" and manifest["apiVersion"] == "flowpod.io/v1alpha1"
    assert "namespace" not in manifest["metadata"], "GitOps output stays namespace-free"
    spec = manifest["spec"]
    assert spec["entrypoint"] == "flows/greet.py:greet" and spec["parameters"] == {"times": 3}
    schema = spec["parameterSchema"]
    assert schema["required"] == ["name"]
    assert schema["properties"]["times"] == {"default": 1, "title": "Times", "type": "integer"}
    assert schema["properties"]["mode"]["enum"] == ["loud", "quiet"]
    # Closed: a misspelt parameter name fails the run in the operator, before any pod.
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("extra,limit,strategy", [
    ([], None, None), (["--concurrency-limit", "2"], 2, "Enqueue"),
    (["--concurrency-limit", "1", "--collision-strategy", "CancelNew"], 1, "CancelNew")])
def test_deploy_dry_run_shows_the_concurrency_limit(invoke, flow_dir, extra, limit, strategy):
    result = invoke("deploy", "flows/greet.py:greet", "--name", "greet", "--image", "i",
                    *extra, "--dry-run", "-o", "yaml")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.stdout)["spec"]
    assert spec.get("concurrencyLimit") == limit
    assert spec.get("collisionStrategy") == strategy


def test_the_parameter_schema_stays_open_for_a_flow_taking_kwargs(invoke, flow_dir):
    result = invoke("deploy", "flows/greet.py:tagged", "--name", "tagged", "--image", "i",
                    "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)["spec"]["parameterSchema"]
    assert "additionalProperties" not in schema and schema["required"] == ["name"]


@pytest.mark.parametrize("args,problem,fix", [
    (["flows/greet.py:greet", "-p", "times=many"], "parameter 'times': Input should be a valid "
     "integer", "fix the -p value"),
    (["flows/greet.py:greet", "-p", "colour=red"], "the flow has no parameter 'colour'",
     "its parameters are: name, times, mode"),
    (["flows/greet.py:hello"], "Entrypoint 'flows/greet.py:hello': flows/greet.py has no "
     "attribute 'hello'", "relative to the current directory"),
    (["flows/nope.py:greet"], "Entrypoint 'flows/nope.py:greet': file", "decorated with @flow"),
    (["flows/greet.py:Literal"], "Entrypoint 'flows/greet.py:Literal' names ", "@flow"),
    (["greet"], "Entrypoint 'greet' is malformed", "relative to the current directory"),
    (["flows/greet.py:greet", "-p", "times"], "parameter 'times' is not KEY=VALUE", "-p name="),
    (["flows/greet.py:greet", "--collision-strategy", "CancelNew"],
     "--collision-strategy needs --concurrency-limit", "add --concurrency-limit N"),
])
def test_deploy_user_errors_name_the_problem_and_fix(invoke, flow_dir, args, problem, fix):
    result = invoke("deploy", *args, "--name", "greet", "--image", "i", "--dry-run")
    assert result.exit_code == 1
    assert f"error: {problem}" in result.stderr
    assert fix in result.stderr


def test_deploy_applies_server_side_and_reports_created_then_unchanged(invoke, api, flow_dir):
    args = ["deploy", "flows/greet.py:greet", "--name", "greet", "--image", "img:1"]
    first = invoke(*args)
    assert first.exit_code == 0 and "deployment.flowpod.io/greet created" in first.stdout
    apply = [r for r in api.requests if r.method == "PATCH"][0]
    assert apply.headers["content-type"] == "application/apply-patch+yaml"
    assert apply.url.params["fieldManager"] == "flowpod-cli"
    assert apply.url.path == "/apis/flowpod.io/v1alpha1/namespaces/team/deployments/greet"
    assert apply.headers["authorization"] == "Bearer t0k"
    assert "deployment.flowpod.io/greet unchanged" in invoke(*args).stdout
    assert "configured" in invoke(*args[:-1], "img:2").stdout


def test_run_creates_a_flow_run_with_json_parameters(invoke, api):
    api.add({"apiVersion": "flowpod.io/v1alpha1", "kind": "Deployment",
             "metadata": {"name": "hello", "namespace": "team"}, "spec": {}})
    result = invoke("run", "hello", "-p", "n=3", "-p", "who=world", "-p", 'xs=[1, 2]')
    assert result.exit_code == 0, result.output
    assert "flowrun.flowpod.io/hello-20300101000100-x1y2 created" in result.stdout
    (body,) = api.bodies("POST")
    # Named by the CLI so names sort by creation time: <deployment>-<UTC stamp>-<random>.
    assert body["metadata"]["name"] == "hello-20300101000100-x1y2"
    assert "generateName" not in body["metadata"]
    assert body["metadata"]["labels"] == {contract.LABEL_DEPLOYMENT: "hello"}
    assert body["spec"] == {"deploymentName": "hello",
                            "parameters": {"n": 3, "who": "world", "xs": [1, 2]}}


def test_run_of_a_missing_deployment_names_it_and_the_fix(invoke, api):
    result = invoke("run", "helo", "-n", "prod")
    assert result.exit_code == 1
    assert "error: Deployment 'helo' in namespace 'prod' not found" in result.stderr
    assert "flowpod deploy FILE:FLOW --name helo" in result.stderr
    assert api.bodies("POST") == []


def _watched_run(api: FakeApi, final: dict) -> None:
    api.add({"apiVersion": "flowpod.io/v1alpha1", "kind": "Deployment",
             "metadata": {"name": "hello", "namespace": "team"}, "spec": {}})
    api.watch_script["hello-20300101000100-x1y2"] = [
        status_of("SCHEDULED", "Scheduled"),
        status_of("PENDING", "Pending", podName="hello-20300101000100-x1y2-1-abcde"),
        status_of("RUNNING", "Running", podName="hello-20300101000100-x1y2-1-abcde",
                  startTime="2030-01-01T00:00:10Z"),
        final,
    ]
    api.logs["hello-20300101000100-x1y2-1-abcde"] = ["Hello, world!", "done"]


def test_run_watch_shows_states_and_logs_and_exits_zero_on_completed(invoke, api):
    _watched_run(api, status_of("COMPLETED", "Completed", podName="hello-20300101000100-x1y2-1-abcde",
                                startTime="2030-01-01T00:00:10Z",
                                endTime="2030-01-01T00:00:11.5Z"))
    result = invoke("run", "hello", "--watch")
    assert result.exit_code == 0, result.output
    for name in ("Scheduled", "Pending", "Running"):
        assert f"00:01:00 {name}" in result.stderr
    assert "Hello, world!\ndone\n" in result.stdout
    assert "hello-20300101000100-x1y2 Completed in 1.5s" in result.stderr


@pytest.mark.parametrize("final,shown", [
    (status_of("FAILED", "Failed", "Flow run raised ValueError: boom"),
     "hello-20300101000100-x1y2 Failed: Flow run raised ValueError: boom"),
    (status_of("CRASHED", "Crashed", "exited with code 137 (SIGKILL)", podName="p"),
     "hello-20300101000100-x1y2 Crashed: exited with code 137 (SIGKILL)"),
])
def test_run_watch_exits_non_zero_unless_completed(invoke, api, final, shown):
    _watched_run(api, final)
    result = invoke("run", "hello", "-w", "--no-logs")
    assert result.exit_code == 1
    assert shown in result.stderr
    assert "Hello, world!" not in result.stdout
    assert not any("/log" in r.url.path for r in api.requests if hasattr(r, "url"))


def test_cancel_patches_spec_cancel_and_refuses_a_finished_run(invoke, api):
    api.add(run_object("team", "r1", status_of("RUNNING", "Running")))
    result = invoke("cancel", "r1")
    assert result.exit_code == 0 and "flowrun.flowpod.io/r1 cancellation requested" in result.stdout
    patch = [r for r in api.requests if r.method == "PATCH"][0]
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(patch.content) == {"spec": {"cancel": True}}
    api.add(run_object("team", "r2", status_of("COMPLETED", "Completed")))
    done = invoke("cancel", "r2")
    assert done.exit_code == 1
    assert "FlowRun 'r2' in namespace 'team' already ended Completed" in done.stderr


def test_cancel_wait_follows_to_cancelled(invoke, api):
    api.add(run_object("team", "r1", status_of("RUNNING", "Running")))
    api.watch_script["r1"] = [status_of("CANCELLING", "Cancelling"),
                              status_of("CANCELLED", "Cancelled", "cancelled by request")]
    result = invoke("cancel", "r1", "--wait")
    assert result.exit_code == 0, result.output
    assert "Cancelling" in result.stderr and "r1 Cancelled" in result.stderr


def test_logs_prints_the_pod_log_or_says_why_there_is_none(invoke, api):
    api.add(run_object("team", "r1", status_of("COMPLETED", "Completed", podName="r1-1-abc")))
    api.logs["r1-1-abc"] = ["line one", "line two"]
    result = invoke("logs", "r1")
    assert result.exit_code == 0 and result.stdout == "line one\nline two\n"
    log_call = [r for r in api.requests if r.url.path.endswith("/log")][0]
    assert log_call.url.params["container"] == contract.CONTAINER_NAME and "follow" not in log_call.url.params
    api.add(run_object("team", "r2", status_of("FAILED", "Failed", "Deployment 'x' not found")))
    none = invoke("logs", "r2")
    assert none.exit_code == 1
    assert "FlowRun 'r2' in namespace 'team' has no pod (state Failed: Deployment 'x' not found)" \
        in none.stderr


def test_logs_of_a_run_whose_pod_is_gone_show_the_lines_kept_in_its_status(invoke, api):
    api.add(run_object("team", "r3", status_of("CANCELLED", "Cancelled", podName="r3-1-abc",
                                               logTail=["step 4 done", "cancelled cleanly"])))
    result = invoke("logs", "r3")  # the fake has no log of r3-1-abc: the pod is gone (404)
    assert result.exit_code == 0, result.output
    assert result.stdout == "step 4 done\ncancelled cleanly\n"
    assert ("pod r3-1-abc gone; showing the last 2 lines kept in the FlowRun's status"
            in result.stderr)
    api.logs["r3-1-abc"] = ["the live log"]  # while the pod exists, its own log is shown
    live = invoke("logs", "r3")
    assert live.exit_code == 0 and live.stdout == "the live log\n"


def test_get_lists_runs_with_state_and_duration(invoke, api):
    api.add(run_object("team", "a", status_of("COMPLETED", "Completed", "",
                                              startTime="2030-01-01T00:00:01Z",
                                              endTime="2030-01-01T00:00:03Z")))
    api.add(run_object("team", "b", status_of("RUNNING", "Retrying", "attempt 2",
                                              startTime="2030-01-01T00:00:30Z")))
    api.add(run_object("other", "c", status_of("SCHEDULED", "Late")))
    result = invoke("get")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.strip().splitlines()]
    assert lines[0] == ["NAME", "DEPLOYMENT", "STATE", "DURATION", "AGE", "MESSAGE"]
    assert lines[1] == ["a", "hello", "Completed", "2.0s", "1m00s"]
    assert lines[2] == ["b", "hello", "Retrying", "30.0s", "1m00s", "attempt", "2"]
    assert len(lines) == 3, "namespace 'other' must not be listed"
    everywhere = invoke("get", "-A", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(everywhere.stdout)["items"]] == \
        ["a", "b", "c"]


def test_get_one_run_in_detail(invoke, api):
    api.add(run_object("team", "a", status_of(
        "FAILED", "Failed", "2 task runs failed", attempt=1, podName="a-1-x", exitCode=0,
        taskRuns={"counts": {"COMPLETED": 3, "FAILED": 2},
                  "failed": [{"name": "add-1", "message": "ValueError: odd"}]},
        stateHistory=[{"name": "Scheduled"}, {"name": "Running"}, {"name": "Failed"}])))
    result = invoke("get", "a")
    assert result.exit_code == 0, result.output
    for expected in ("Failed", "2 task runs failed", "a-1-x", "COMPLETED 3, FAILED 2",
                     "add-1: ValueError: odd", "Scheduled -> Running -> Failed"):
        assert expected in result.stdout


def test_get_says_when_a_result_was_not_kept(invoke, api):
    why = "The result was not kept: a set is not JSON"
    api.add(run_object("team", "a", status_of("COMPLETED", "Completed",
                                              result={"notKept": why})))
    result = invoke("get", "a")
    assert result.exit_code == 0, result.output
    assert why in " ".join(result.stdout.split())


def test_missing_crds_are_explained(invoke, api):
    api.crds_installed = False
    result = invoke("get")
    assert result.exit_code == 1
    assert "the flowpod CRDs are not installed" in result.stderr
    assert "flowpod crds | kubectl apply -f -" in result.stderr


def test_unreachable_cluster_is_explained(tmp_path: Path):
    connection = _connection("https://127.0.0.1:9", None, "default", "kc")

    async def load_config(target) -> Connection:
        return connection

    deps = cli.Deps(load_config=load_config, err=Console(width=200, stderr=True))
    result = CliRunner().invoke(cli.build_app(deps), ["get"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "cannot reach the Kubernetes API at https://127.0.0.1:9 (kc)" in result.stderr
    assert "make cluster-up" in result.stderr and "Traceback" not in result.output


def test_bad_output_format_is_refused(invoke):
    result = invoke("get", "-o", "xml")
    assert result.exit_code == 1 and "unknown output format 'xml'" in result.stderr


def test_crds_prints_the_generated_crds(invoke):
    result = invoke("crds")
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["spec"]["names"]["kind"] for d in docs] == ["Deployment", "FlowRun"]
    assert docs == [yaml.safe_load(t) for t in crdgen.render_all().values()]


def test_operator_forwards_its_flags(invoke, api):
    result = invoke("operator", "--namespace", "a", "--health-port", "0")
    assert result.exit_code == 0
    assert api.requests == [["--namespace", "a", "--health-port", "0"]]


def test_dry_run_yaml_quotes_keys_kubectl_would_read_as_booleans(invoke, flow_dir):
    # kubectl parses YAML 1.1: a bare `n:` key would reach the API server as `false`.
    (flow_dir / "flows" / "yn.py").write_text(
        "from flowpod import flow\n\n@flow\ndef yn(n: int = 1, y: str = 'N'):\n    return n\n")
    result = invoke("deploy", "flows/yn.py:yn", "--name", "yn", "--image", "i", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "\n      'n':\n" in result.stdout and "\n      'y':\n" in result.stdout
    assert "default: 'N'" in result.stdout


def test_run_watch_shows_every_transition_even_when_one_write_carries_two(invoke, api):
    # The operator writes Scheduled and Pending in one status patch; the watch sees only the
    # result, so the CLI must read the transitions from stateHistory.
    api.add({"apiVersion": "flowpod.io/v1alpha1", "kind": "Deployment",
             "metadata": {"name": "hello", "namespace": "team"}, "spec": {}})
    scheduled = status_of("SCHEDULED", "Scheduled", "Scheduled to start now")["state"]
    pending = status_of("PENDING", "Pending", "Job created")["state"]
    done = status_of("COMPLETED", "Completed")["state"]
    api.watch_script["hello-20300101000100-x1y2"] = [
        {"state": pending, "stateHistory": [scheduled, pending]},
        {"state": done, "stateHistory": [scheduled, pending, done]},
    ]
    result = invoke("run", "hello", "--watch", "--no-logs")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("00:01:00")]
    assert lines == ["00:01:00 Scheduled  Scheduled to start now",
                     "00:01:00 Pending  Job created", "00:01:00 Completed"]


def test_deploy_handles_clashing_names_kwargs_and_plain_class_parameters(invoke, flow_dir):
    (flow_dir / "flows" / "odd.py").write_text(
        "from flowpod import flow\n\nclass Conn:\n    pass\n\n@flow\n"
        "def odd(json: dict, schema: str = 's', conn: Conn = Conn(), **extra):\n"
        "    return json\n")
    result = invoke("deploy", "flows/odd.py:odd", "--name", "odd", "--image", "i", "--dry-run",
                    "-p", 'json={"a": 1}', "-p", "free=1", "-o", "json")
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["spec"]
    assert spec["parameters"] == {"json": {"a": 1}, "free": 1}  # **extra takes `free`
    props = spec["parameterSchema"]["properties"]
    assert list(props) == ["json", "schema", "conn"] and props["json"]["type"] == "object"
    assert "type" not in props["conn"], "a plain class has no JSON schema: any value"
    assert spec["parameterSchema"]["required"] == ["json"]
