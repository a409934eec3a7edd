"""Unit tests of the CLI's schedule surface against the shared fake API: `deploy --cron/
--interval/--rrule/--timezone/--paused/--missed-run-policy/--concurrency-policy` (the
manifest, and refusals naming the flag and the fix, checked with the operator's own
timetables before any request), `pause`/`unpause` (a merge patch of spec.paused only), and
the schedule columns of `get deployments`. Hermetic; the real-plane test is in
test_cli_cluster_schedules.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from delivery.test_cli import api, flow_dir, invoke  # noqa: F401
from fakeapi import FakeApi
from flowpod import contract
from flowpod_operator.crds import resources

DEPLOY = ("deploy", "flows/greet.py:greet", "--name", "greet", "--image", "img:1")


def _deployment(api: FakeApi, name: str = "hello", **spec) -> None:
    api.add({"apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
             "metadata": {"name": name, "namespace": "team",
                          "creationTimestamp": "2030-01-01T00:00:00Z"},
             "spec": {"entrypoint": "flows/hello.py:hello", "image": "img:1", **spec}})


def test_dry_run_prints_the_schedules_and_policies_in_flag_order(invoke, api, flow_dir):
    result = invoke(*DEPLOY, "--interval", "600", "--cron", "0 9 * * 1-5", "--rrule",
                    "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "--cron", "@hourly", "--timezone",
                    "Europe/Berlin", "--paused", "--missed-run-policy", "RunAll",
                    "--concurrency-policy", "Replace", "--dry-run", "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert api.requests == []
    manifest = yaml.safe_load(result.stdout)
    spec = manifest["spec"]
    # Every --cron, then every --interval, then every --rrule; the zone on cron and rrule.
    assert spec["schedules"] == [
        {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        {"cron": "@hourly", "timezone": "Europe/Berlin"},
        {"interval": 600},
        {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "timezone": "Europe/Berlin"}]
    assert (spec["paused"], spec["missedRunPolicy"], spec["concurrencyPolicy"]) == (
        True, "RunAll", "Replace")
    resources.Deployment.model_validate(manifest)  # what the API server will accept


def test_without_schedule_flags_the_deployment_has_no_schedule_fields(invoke, flow_dir):
    result = invoke(*DEPLOY, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)["spec"]
    assert not {"schedules", "paused", "missedRunPolicy", "concurrencyPolicy"} & set(spec)


def test_deploy_applies_the_schedules(invoke, api, flow_dir):
    result = invoke(*DEPLOY, "--interval", "10", "--concurrency-policy", "Forbid")
    assert result.exit_code == 0, result.output
    assert "deployment.flowpod.io/greet created" in result.stdout
    (applied,) = api.bodies("PATCH")
    assert applied["spec"]["schedules"] == [{"interval": 10}]
    assert applied["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("flags,problem,fix", [
    (["--cron", "99 * * * *"], "--cron: '99 * * * *' is not a cron expression",
     "write five fields"),
    (["--cron", "0 * * *"], "--cron: '0 * * *' is not a cron expression", "e.g. '*/15 * * * *'"),
    (["--interval", "5", "--cron", "@daily", "--timezone", "Europe/Berln"],
     "--timezone: 'Europe/Berln' is not an IANA time zone", "Europe/Berlin"),
    (["--rrule", "FREQ=SOMETIMES"], "--rrule: 'FREQ=SOMETIMES' is not an RFC 5545 recurrence "
     "rule", "write it like 'FREQ=WEEKLY"),
    (["--interval", "5", "--timezone", "Europe/Berlin"],
     "--timezone applies to --cron and --rrule only", "drop --timezone"),
    (["--paused"], "--paused has no effect without a schedule",
     "add --cron, --interval or --rrule, or drop --paused"),
    (["--concurrency-policy", "Forbid", "--timezone", "UTC"],
     "--timezone has no effect without a schedule", "drop --timezone and --concurrency-policy"),
    (["--interval", "5", "--missed-run-policy", "runall"],
     "--missed-run-policy 'runall' is not a policy", "use one of RunLatest, RunAll, Skip"),
    (["--interval", "5", "--concurrency-policy", "Queue"],
     "--concurrency-policy 'Queue' is not a policy", "use one of Allow, Forbid, Replace"),
])
def test_a_schedule_the_operator_would_refuse_is_refused_naming_the_flag(
        invoke, api, flow_dir, flags, problem, fix):
    result = invoke(*DEPLOY, *flags)
    assert result.exit_code == 1
    assert f"error: {problem}" in result.stderr
    assert "fix: " in result.stderr and fix in result.stderr
    assert api.requests == [], "refused before any cluster is used"


def test_pause_and_unpause_merge_patch_spec_paused_only(invoke, api):
    _deployment(api, schedules=[{"interval": 10}])
    paused = invoke("pause", "hello")
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.strip() == "deployment.flowpod.io/hello paused"
    assert "flowpod cancel RUN -n team" in paused.stderr  # started runs are not stopped
    (patch,) = [r for r in api.requests if r.method == "PATCH"]
    assert patch.headers["content-type"] == contract.MERGE_PATCH
    assert json.loads(patch.content) == {"spec": {"paused": True}}
    assert api.get("deployments", "team", "hello")["spec"]["paused"] is True

    again = invoke("pause", "hello")
    assert again.stdout.strip() == "deployment.flowpod.io/hello already paused"
    assert len([r for r in api.requests if r.method == "PATCH"]) == 1

    resumed = invoke("unpause", "hello")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == "deployment.flowpod.io/hello unpaused"
    assert api.get("deployments", "team", "hello")["spec"]["paused"] is False


def test_pausing_a_deployment_without_schedules_says_what_paused_does(invoke, api):
    _deployment(api)
    result = invoke("pause", "hello")
    assert result.exit_code == 0, result.output
    assert "has no schedules; spec.paused only stops scheduled runs" in result.stderr


@pytest.mark.parametrize("command", ["pause", "unpause"])
def test_pause_of_a_missing_deployment_names_it_and_how_to_create_it(invoke, api, command):
    result = invoke(command, "nope")
    assert result.exit_code == 1
    assert "error: Deployment 'nope' in namespace 'team' not found" in result.stderr
    assert "flowpod deploy FILE:FLOW --name nope --image IMAGE -n team" in result.stderr
    assert [r for r in api.requests if r.method == "PATCH"] == []


def test_get_deployments_shows_schedule_next_active_and_last(invoke, api):
    _deployment(api, "tick", schedules=[{"interval": 30}])
    api.get("deployments", "team", "tick")["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduling"}],
        "schedule": "every 30s", "activeRuns": 2,
        "nextScheduleTimes": ["2030-01-01T00:01:30Z", "2030-01-01T00:02:00Z"],
        "lastScheduleTime": "2030-01-01T00:00:30Z", "lastRunState": "Running"}
    _deployment(api, "broken", schedules=[{"cron": "99 * * * *"}])
    api.get("deployments", "team", "broken")["status"] = {
        "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSchedule"}],
        "activeRuns": 0}
    _deployment(api, "manual")
    result = invoke("get", "deployments")
    assert result.exit_code == 0, result.output
    rows = [line.split("   ") for line in result.stdout.splitlines()]
    rows = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert rows == [
        ["NAME", "ENTRYPOINT", "IMAGE", "SCHEDULE", "NEXT", "ACTIVE", "LAST", "AGE"],
        ["broken", "flows/hello.py:hello", "img:1", "InvalidSchedule", "-", "0", "-",
         "1m00s"],
        ["manual", "flows/hello.py:hello", "img:1", "-", "-", "-", "-", "1m00s"],
        ["tick", "flows/hello.py:hello", "img:1", "every 30s", "in 30.0s", "2",
         "Running 30.0s ago", "1m00s"]]
