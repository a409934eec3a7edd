"""The decision function, starting a run: Deployment resolution, parameter checks,
Scheduled/Late, the Job of attempt 1 and its exact shape, and restarts between steps."""

from __future__ import annotations

import json

from flowpod import contract

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import observations as obs


def decide(k8s, flowrun, deployment="default", **kw):
    if deployment == "default":
        deployment = k8s.deployment()
    return _deciding.decide(obs.Observation(flowrun, deployment, **kw), k8s.now)


def names(write: act.WriteStatus) -> list[str]:
    return [s.name for s in write.states]


def test_new_run_creates_job_then_records_scheduled_and_pending(k8s):
    actions = decide(k8s, k8s.flowrun())
    assert [type(a) for a in actions] == [act.CreateJob, act.WriteStatus]
    create, write = actions
    assert create.name == "run-1"
    assert names(write) == ["Scheduled", "Pending"]
    assert write.states[-1].message == "Job run-1 created (attempt 1 of 1)"
    assert write.fields == {"attempt": 1, "jobName": "run-1"}


def test_job_shape(k8s):
    deployment = k8s.deployment(timeout=600, grace=7, retries=2, pending=45,
                                parameters={"n": 1, "who": "x"},
                                template={"env": [{"name": "EXTRA", "value": "1"},
                                                  {"name": contract.ENV_ATTEMPT,
                                                   "value": "99"},
                                                  {"name": contract.ENV_PARAMETERS,
                                                   "value": "{}"}],
                                          "resources": {"limits": {"memory": "64Mi"}},
                                          "nodeSelector": {"disk": "ssd"}})
    create = decide(k8s, k8s.flowrun(parameters={"n": 2}), deployment)[0]
    job = create.manifest
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"] == {contract.LABEL_FLOW_RUN: "run", contract.LABEL_DEPLOYMENT: "hello",
                              obs.LABEL_ATTEMPT: "1"}
    assert meta["ownerReferences"] == [{"apiVersion": "flowpod.io/v1alpha1", "kind": "FlowRun",
                                        "name": "run", "uid": "uid-run", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["annotations"][obs.ANNOTATION_RETRIES] == "2"
    assert meta["annotations"][obs.ANNOTATION_PENDING_TIMEOUT] == "45"
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] == 7
    assert pod["serviceAccountName"] == contract.DEFAULT_SERVICE_ACCOUNT
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["name"] == contract.CONTAINER_NAME and container["image"] == "flowpod/engine:dev"
    assert container["command"] == list(contract.ENGINE_COMMAND)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == {"limits": {"memory": "64Mi"}}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env[contract.ENV_FLOW_RUN_NAME] == "run"
    assert env[contract.ENV_FLOW_RUN_NAMESPACE] == {"fieldRef": {"fieldPath":
                                                                 "metadata.namespace"}}
    assert env[contract.ENV_ENTRYPOINT] == "flows/hello.py:hello"
    # The parameters are no env var (one is capped at 128 KiB): the engine reads the same
    # merge the operator validated from the API.
    assert contract.ENV_PARAMETERS not in env
    assert manifests.resolve_parameters(k8s.flowrun(parameters={"n": 2}), deployment) == {
        "n": 2, "who": "x"}
    assert env[contract.ENV_ATTEMPT] == "1"  # a template cannot override the engine's env
    assert env["EXTRA"] == "1"


def test_long_names_stay_valid_and_deterministic(k8s):
    long = "a" * 70
    first = decide(k8s, k8s.flowrun(long))[0]
    again = decide(k8s, k8s.flowrun(long))[0]
    assert first.name == again.name and len(first.name) <= 63 and first.name.endswith("-1")
    assert len(first.manifest["metadata"]["labels"][contract.LABEL_FLOW_RUN]) <= 63
    assert first.manifest["metadata"]["annotations"][obs.ANNOTATION_FLOW_RUN] == long


def test_adhoc_run_uses_its_own_entrypoint_and_image(k8s):
    run = k8s.flowrun(deployment=None, entrypoint="a/b.py:f", image="python:3.12")
    create, write = decide(k8s, run, deployment=None)
    container = create.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "python:3.12"
    assert contract.LABEL_DEPLOYMENT not in create.manifest["metadata"]["labels"]
    assert names(write) == ["Scheduled", "Pending"]


def test_deployment_not_cached_is_read_before_concluding(k8s):
    assert decide(k8s, k8s.flowrun(), deployment=None) == [act.Refresh(deployment=True)]


def test_missing_deployment_fails_with_exact_message(k8s):
    (write,) = decide(k8s, k8s.flowrun(deployment="x", ns="y"), deployment=None,
                      deployment_fresh=True)
    assert names(write) == ["Failed"]
    assert write.states[0].message == "Deployment 'x' not found in namespace 'y'"


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"},
                                           "who": {"type": "string"}},
          "required": ["n"], "additionalProperties": False}


def test_invalid_parameter_type_fails_naming_the_field(k8s):
    (write,) = decide(k8s, k8s.flowrun(parameters={"n": "three"}),
                      k8s.deployment(schema=SCHEMA))
    assert names(write) == ["Failed"]
    message = write.states[0].message
    assert message.startswith("Validation of the flow parameters failed: parameter 'n'")
    assert "'three' is not of type 'integer'" in message and "spec.parameters.n" in message


def test_missing_and_unexpected_parameters_are_named(k8s):
    (write,) = decide(k8s, k8s.flowrun(parameters={"nope": 1}),
                      k8s.deployment(schema=SCHEMA))
    message = write.states[0].message
    assert "parameter 'n' is required but missing" in message
    assert "unexpected parameter(s) 'nope'" in message


def test_deployment_defaults_satisfy_the_schema(k8s):
    actions = decide(k8s, k8s.flowrun(), k8s.deployment(schema=SCHEMA, parameters={"n": 1}))
    assert isinstance(actions[0], act.CreateJob)


def test_parameters_over_the_size_limit_fail_before_any_job(k8s):
    half = "x" * (contract.MAX_PARAMETERS_BYTES // 2)
    (write,) = decide(k8s, k8s.flowrun(parameters={"a": half}),
                      k8s.deployment(parameters={"b": half}))
    assert names(write) == ["Failed"]
    assert write.states[0].message == (
        "spec.parameters is too large: 262159 bytes as JSON (with the Deployment's defaults), "
        "over the limit of 262144 bytes (256 KiB); pass large inputs by reference (a URL or a "
        "path on a volume) instead")
    actions = decide(k8s, k8s.flowrun(parameters={"a": half}), k8s.deployment())
    assert isinstance(actions[0], act.CreateJob)


def _applied_by_kubectl(obj, parameters):
    """`obj` as client-side `kubectl apply` leaves it: nulls gone from the object, kept in
    its last-applied annotation."""
    applied = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
               "metadata": {"name": obj["metadata"]["name"]},
               "spec": {**obj["spec"], "parameters": parameters}}
    obj["metadata"]["annotations"] = {contract.ANNOTATION_LAST_APPLIED: json.dumps(applied)}
    return obj


def test_a_null_parameter_dropped_by_kubectl_apply_fails_naming_it(k8s):
    run = _applied_by_kubectl(k8s.flowrun(parameters={"cfg": {}}),
                              {"name": None, "cfg": {"depth": None}})
    (write,) = decide(k8s, run)
    assert names(write) == ["Failed"]
    assert write.states[0].message == (
        "Validation of the flow parameters failed: spec.parameters.name, "
        "spec.parameters.cfg.depth of FlowRun 'run' was null, and `kubectl apply` drops null "
        "fields, so the flow would silently get its default instead; apply it with `kubectl "
        "apply --server-side` or `kubectl create` to pass null, or leave the parameter out to "
        "use its default")
    deployment = _applied_by_kubectl(k8s.deployment(parameters={}), {"who": None})
    (write,) = decide(k8s, k8s.flowrun(), deployment)
    assert "spec.parameters.who of Deployment 'hello' was null" in write.states[0].message
    # A null that arrived (server-side apply, create) is the flow's to take or refuse.
    kept = _applied_by_kubectl(k8s.flowrun(parameters={"name": None}), {"name": None})
    assert isinstance(decide(k8s, kept)[0], act.CreateJob)


def test_invalid_schema_is_reported(k8s):
    (write,) = decide(k8s, k8s.flowrun(), k8s.deployment(schema={"type": "nonsense"}))
    assert "parameterSchema is not a valid JSON schema" in write.states[0].message


def test_future_run_is_scheduled_and_rechecked_at_its_time(k8s):
    requeue, write = decide(k8s, k8s.flowrun(scheduled=90))
    assert requeue == act.Requeue(90.0)
    assert names(write) == ["Scheduled"]
    assert write.states[0].message == "Scheduled to start at 2026-03-01T12:01:30.000Z"
    # Already Scheduled: only wait.
    run = k8s.flowrun(scheduled=30, state=k8s.state("SCHEDULED"))
    assert decide(k8s, run) == [act.Requeue(30.0)]


def test_due_run_starts_on_time_without_late(k8s):
    run = k8s.flowrun(scheduled=-2, state=k8s.state("SCHEDULED"))
    create, write = decide(k8s, run)
    assert create.name == "run-1" and names(write) == ["Pending"]


def test_overdue_run_goes_late_then_pending(k8s):
    run = k8s.flowrun(scheduled=-120, state=k8s.state("SCHEDULED", offset=-300))
    create, write = decide(k8s, run)
    assert names(write) == ["Late", "Pending"]
    assert write.states[0].message.startswith("Starting 120s after its scheduled time")
    assert create.name == "run-1"


def test_refused_job_fails_the_run_with_the_api_message(k8s):
    (write,) = decide(k8s, k8s.flowrun(), job_error="spec.template...: Invalid value: \"x\"")
    assert names(write) == ["Failed"]
    assert write.states[0].message.startswith("Job run-1 could not be created: spec.template")


def test_job_made_before_a_restart_is_recorded_not_recreated(k8s):
    run = k8s.flowrun()
    (write,) = decide(k8s, run, jobs=[k8s.job(run)])
    assert names(write) == ["Scheduled", "Pending"]
    assert write.fields == {"attempt": 1, "jobName": "run-1"}


def test_engine_already_running_gets_only_the_attempt_recorded(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"))
    (write,) = decide(k8s, run, jobs=[k8s.job(run)], pods=[k8s.pod(run)])
    assert write.states == () and write.fields == {"attempt": 1, "jobName": "run-1"}


def test_run_started_elsewhere_is_left_alone(k8s):
    assert decide(k8s, k8s.flowrun(state=k8s.state("RUNNING"))) == []


def test_composite_write_keeps_history_in_order(k8s):
    (_, write) = decide(k8s, k8s.flowrun())
    patch = act.status_patch_for(write, None, generation=1, now=k8s.now)
    assert [h["name"] for h in patch["stateHistory"]] == ["Scheduled", "Pending"]
    assert patch["state"]["name"] == "Pending" and patch["attempt"] == 1
    conditions = {c["type"]: c["status"] for c in patch["conditions"]}
    assert conditions == {"Succeeded": "Unknown", "Ready": "False"}


def test_job_left_by_an_earlier_flowrun_of_the_same_name_is_not_adopted(k8s):
    old_run = k8s.flowrun()
    old_run["metadata"]["uid"] = "uid-of-a-deleted-run"
    stale_job, stale_pod = k8s.job(old_run), k8s.pod(old_run, exit_code=0)
    actions = decide(k8s, k8s.flowrun(), jobs=[stale_job], pods=[stale_pod],
                     gone_pods=[stale_pod])
    assert [type(a) for a in actions] == [act.CreateJob, act.WriteStatus]
    notes = actions[0].manifest["metadata"]["annotations"]
    assert notes[obs.ANNOTATION_FLOW_RUN_UID] == "uid-run"


def test_decide_labels_a_run_with_its_deployment(k8s):
    run = k8s.flowrun(state=k8s.state("RUNNING"), attempt=1, podName="run-1-abcde")
    del run["metadata"]["labels"]
    assert _deciding.decide(obs.Observation(
        run, k8s.deployment(), jobs=[k8s.job(run)], pods=[k8s.pod(run)]), k8s.now) == [
        act.LabelFlowRun({contract.LABEL_DEPLOYMENT: "hello"})]
    # Last, after the one status write, which it cannot make stale.
    fresh = k8s.flowrun()
    del fresh["metadata"]["labels"]
    actions = _deciding.decide(obs.Observation(fresh, k8s.deployment()), k8s.now)
    assert [type(a) for a in actions] == [act.CreateJob, act.WriteStatus, act.LabelFlowRun]
    # A run without a Deployment gets none.
    adhoc = k8s.flowrun(deployment=None, state=k8s.state("RUNNING"), attempt=1,
                        podName="run-1-abcde")
    assert _deciding.decide(obs.Observation(
        adhoc, None, jobs=[k8s.job(adhoc)], pods=[k8s.pod(adhoc)]), k8s.now) == []


def test_a_long_deployment_name_gets_the_label_value_its_jobs_carry(k8s):
    name = "d" * 70
    run = k8s.flowrun(deployment=name, state=k8s.state("COMPLETED"), attempt=1)
    del run["metadata"]["labels"]
    (label,) = _deciding.decide(obs.Observation(run, None), k8s.now)
    value = label.labels[contract.LABEL_DEPLOYMENT]
    assert len(value) <= 63
    assert value == k8s.job(run)["metadata"]["labels"][contract.LABEL_DEPLOYMENT]
