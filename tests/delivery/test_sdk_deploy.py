"""Flow.to_deployment against `flowpod deploy --dry-run`: one builder, the same manifest.

Role: the SDK's manifest equals the CLI's for the same flow and options (hermetic, no
cluster); arguments the Deployment cannot take are refused naming the argument and the fix;
the entrypoint is derived from the flow's file or refused with the way out; without the
`cli` extra, deploy says which extra to install. The real-plane apply is in
test_sdk_deploy_cluster.py.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
import yaml

from delivery.test_cli import api, flow_dir, invoke  # noqa: F401
from flowpod import deploying, engine, flow
from flowpod.deployments import DeploymentError
from flowpod_operator.crds import resources


def _greet():
    return engine.load_flow_from_entrypoint("flows/greet.py:greet")


def _dry_run(invoke, *flags: str) -> dict:  # noqa: F811
    result = invoke("deploy", "flows/greet.py:greet", "--name", "greet", "--image", "img:1",
                    *flags, "--dry-run", "-o", "yaml")
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_to_deployment_equals_the_cli_dry_run(invoke, flow_dir):  # noqa: F811
    cli = _dry_run(invoke, "-p", "times=3", "--cron", "0 9 * * 1-5", "--cron", "@hourly",
                   "--interval", "600", "--rrule", "FREQ=WEEKLY;BYDAY=MO",
                   "--timezone", "Europe/Berlin", "--paused", "--concurrency-limit", "2",
                   "--collision-strategy", "CancelNew", "--retries", "2",
                   "--timeout-seconds", "60", "-n", "team")
    sdk = _greet().to_deployment(
        "greet", image="img:1", parameters={"times": 3}, cron=["0 9 * * 1-5", "@hourly"],
        interval=timedelta(minutes=10), rrule="FREQ=WEEKLY;BYDAY=MO",
        timezone="Europe/Berlin", paused=True, concurrency_limit=2,
        collision_strategy="CancelNew", retries=2, timeout_seconds=60, namespace="team")
    assert sdk == cli
    assert sdk["spec"]["entrypoint"] == "flows/greet.py:greet"
    resources.Deployment.model_validate(sdk)


def test_to_deployment_equals_the_cli_dry_run_without_options(invoke, flow_dir):  # noqa: F811
    sdk = _greet().to_deployment("greet", image="img:1")
    assert sdk == _dry_run(invoke)
    assert sdk["spec"]["parameterSchema"]["additionalProperties"] is False


def test_a_kwargs_flow_keeps_an_open_schema(invoke, flow_dir):  # noqa: F811
    tagged = engine.load_flow_from_entrypoint("flows/greet.py:tagged")
    sdk = tagged.to_deployment("tagged", image="img:1", parameters={"team": "a"})
    result = invoke("deploy", "flows/greet.py:tagged", "--name", "tagged", "--image", "img:1",
                    "-p", "team=a", "--dry-run", "-o", "yaml")
    assert sdk == yaml.safe_load(result.stdout)
    assert "additionalProperties" not in sdk["spec"]["parameterSchema"]


@pytest.mark.parametrize(("options", "problem", "fix"), [
    ({"parameters": {"times": "many"}}, "parameter 'times'", "parameters="),
    ({"parameters": {"nmae": "x"}}, "no parameter 'nmae'", "its parameters are: name"),
    ({"interval": 0}, "interval=0", "interval=600"),
    ({"timezone": "UTC", "interval": 60}, "timezone= applies to cron=", "drop timezone="),
    ({"paused": True}, "paused= has no effect without a schedule", "cron="),
    ({"collision_strategy": "CancelNew"}, "needs concurrency_limit=", "concurrency_limit=N"),
])
def test_refusals_name_the_argument_and_the_fix(flow_dir, options, problem, fix):  # noqa: F811
    with pytest.raises(DeploymentError) as caught:
        _greet().to_deployment("greet", image="img:1", **options)
    assert problem in caught.value.problem and fix in caught.value.fix


def test_a_bad_name_is_refused_like_the_cli_refuses_it(invoke, flow_dir):  # noqa: F811
    with pytest.raises(DeploymentError, match="'Greet' is not a valid Kubernetes name"):
        _greet().to_deployment("Greet", image="img:1")
    result = invoke("deploy", "flows/greet.py:greet", "--name", "Greet", "--image", "img:1",
                    "--dry-run")
    assert result.exit_code == 1 and "'Greet' is not a valid Kubernetes name" in result.output


def test_the_entrypoint_is_relative_to_the_current_directory(flow_dir, monkeypatch):  # noqa: F811
    greet = _greet()
    monkeypatch.chdir(flow_dir / "flows")
    assert greet.to_deployment("greet", image="i")["spec"]["entrypoint"] == "greet.py:greet"
    explicit = greet.to_deployment("greet", image="i", entrypoint="app/flows.py:greet")
    assert explicit["spec"]["entrypoint"] == "app/flows.py:greet"


def test_a_flow_without_a_source_file_asks_for_an_entrypoint():
    namespace: dict = {"flow": flow}
    exec(compile("@flow\ndef typed_in_a_notebook(): pass\n", "<ipython-input-1>", "exec"),
         namespace)
    with pytest.raises(DeploymentError, match="has no source file") as caught:
        namespace["typed_in_a_notebook"].to_deployment("nb", image="i")
    assert "pass entrypoint=" in caught.value.fix
    manifest = namespace["typed_in_a_notebook"].to_deployment("nb", image="i",
                                                              entrypoint="nb.py:f")
    assert manifest["spec"]["entrypoint"] == "nb.py:f"


def test_a_nested_flow_asks_for_an_entrypoint():
    @flow
    def inner():
        pass

    with pytest.raises(DeploymentError, match="not defined at the top level"):
        inner.to_deployment("inner", image="i")


def test_deploy_without_the_cli_extra_says_what_to_install(flow_dir, monkeypatch):  # noqa: F811
    for module in [m for m in sys.modules if m.split(".")[0] in ("flowpod_kube",
                                                                 "kubernetes_asyncio")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "kubernetes_asyncio", None)  # import blocked
    with pytest.raises(ImportError, match=r"pip install 'flowpod\[cli\]'"):
        _greet().deploy("greet", image="img:1")
