"""The operator and result storage: the URL reaches the pod's env (the FlowRun's wins over
its Deployment's), a protocol fsspec does not know fails the run before any pod naming the
field, and the CRD refuses a value that is no URL at all."""

from __future__ import annotations

from flowpod import contract

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import deciding as _deciding
from flowpod_operator._decisions import observations as obs
from flowpod_operator.crds import crdgen


def _decide(k8s, flowrun, deployment):
    return _deciding.decide(obs.Observation(flowrun, deployment), k8s.now)


def _env(create: act.CreateJob) -> dict[str, str]:
    (container,) = create.manifest["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def _with_storage(obj: dict, url: str) -> dict:
    obj["spec"]["resultStorage"] = url
    return obj


def test_deployment_storage_reaches_the_pod(k8s):
    deployment = _with_storage(k8s.deployment(template={"env": [
        {"name": contract.ENV_RESULT_STORAGE, "value": "file:///elsewhere"}]}),
        "file:///mnt/results")
    create = _decide(k8s, k8s.flowrun(), deployment)[0]
    # The field is the one way to set it: a template's variable of that name is dropped.
    assert _env(create)[contract.ENV_RESULT_STORAGE] == "file:///mnt/results"


def test_flowrun_storage_overrides_the_deployment(k8s):
    deployment = _with_storage(k8s.deployment(), "file:///mnt/results")
    run = _with_storage(k8s.flowrun(), "s3://bucket/prefix")
    assert _env(_decide(k8s, run, deployment)[0])[contract.ENV_RESULT_STORAGE] == (
        "s3://bucket/prefix")


def test_no_storage_no_env(k8s):
    assert contract.ENV_RESULT_STORAGE not in _env(_decide(k8s, k8s.flowrun(),
                                                            k8s.deployment())[0])


def test_unknown_protocol_fails_the_run_before_any_pod_naming_the_field(k8s):
    deployment = _with_storage(k8s.deployment(), "nosuch://bucket/x")
    actions = _decide(k8s, k8s.flowrun(), deployment)
    assert not any(isinstance(a, act.CreateJob) for a in actions)
    (write,) = [a for a in actions if isinstance(a, act.WriteStatus)]
    final = write.states[-1]
    assert final.is_failed()
    assert final.message == (
        "spec.resultStorage of Deployment 'hello' is 'nosuch://bucket/x', whose protocol "
        "'nosuch' fsspec does not know; use file:///path (a mounted volume), "
        "s3://bucket/prefix, gs://bucket/prefix or another fsspec protocol")


def test_unknown_protocol_of_an_adhoc_run_names_the_flowrun(k8s):
    run = _with_storage(k8s.flowrun(deployment=None), "nosuch://x")
    (write,) = [a for a in _decide(k8s, run, None) if isinstance(a, act.WriteStatus)]
    assert write.states[-1].message.startswith("spec.resultStorage of FlowRun 'run' is ")


def _spec_schema(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_crd_checks_the_url_shape_and_has_the_retry_source():
    spec = _spec_schema(crdgen.flowrun_crd())
    (rule,) = spec["resultStorage"]["x-kubernetes-validations"]
    assert "fsspec URL" in rule["message"] and "spec.resultStorage" in rule["message"]
    assert set(spec["reuseResultsFrom"]["required"]) == {"flowRunName", "flowRunUid"}
    assert "resultStorage" in _spec_schema(crdgen.deployment_crd())
