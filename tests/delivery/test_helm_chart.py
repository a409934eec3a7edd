"""The Helm chart charts/flowpod, rendered and linted by the real (pinned) helm binary.

Role: proves the chart's static promises: it lints and renders for the default values and for
two other value sets; RBAC holds exact verbs only (ClusterRole when watching everything, one Role
per namespace otherwise); flow-run pods get nothing beyond their FlowRuns; the operator pod is
locked down and probed on /healthz; image tags fall back to appVersion; a typo or a wrong type
in values is refused by values.schema.json with a message naming it; and the chart's crds/ equal
the top-level crds/. Called by pytest (hermetic: helm renders offline; no cluster needed).
"""

from __future__ import annotations

import filecmp
import json
import re
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from delivery import _helm
from flowpod import contract
from flowpod_operator._runtime import kubeapi

REPO = _helm.CHART.parents[1]
OPERATOR_NAME = "rel-flowpod-operator"
# The operator's own account of what it calls (flowpod_operator._runtime.kubeapi.RBAC_RULES),
# as data.
OPERATOR_RULES = [dict(rule) for rule in kubeapi.RBAC_RULES]
FLOW_RUN_RULES = [
    {"apiGroups": ["flowpod.io"], "resources": ["flowruns"],
     "verbs": ["get", "patch", "watch", "create"]},
    {"apiGroups": ["flowpod.io"], "resources": ["flowruns/status"], "verbs": ["patch"]},
    {"apiGroups": ["flowpod.io"], "resources": ["deployments"], "verbs": ["get"]},
]
VALUE_SETS = {
    "default": [],
    "namespaced": ["watchNamespaces={team-a,team-b}", "flowRuns.namespaces={batch}"],
    "custom-images": ["image.operator.repository=registry.example.com/flowpod/operator",
                      "image.operator.tag=1.2.3", "image.operator.pullPolicy=Always",
                      "image.engine.repository=registry.example.com/flowpod/engine",
                      "image.engine.tag=1.2.3", "imagePullSecrets[0].name=regcred",
                      "operator.healthPort=9090", "fullnameOverride=fp"],
    "limits": ["operator.maxConcurrentRuns=3", "operator.ttlSecondsAfterFinished=0"],
    "ha": ["operator.replicas=3", "operator.leaderElection.leaseDuration=20",
           "operator.leaderElection.renewDeadline=12", "operator.leaderElection.retryPeriod=3"],
}


def _chart_meta() -> dict:
    return yaml.safe_load((_helm.CHART / "Chart.yaml").read_text())


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict_passes(name: str, tmp_path: Path) -> None:
    args = ["lint", "--strict", str(_helm.CHART), "--kube-version", _helm.KUBE_VERSION]
    for item in VALUE_SETS[name]:
        args += ["--set", item]
    out = _helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_chart_version_is_separate_from_app_version() -> None:
    meta = _chart_meta()
    assert meta["apiVersion"] == "v2"
    assert meta["version"] and meta["appVersion"]
    pyproject = (REPO / "pyproject.toml").read_text()
    app = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert meta["appVersion"] == app, "appVersion must follow the flowpod release"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_each_template_file_renders_one_kind(name: str) -> None:
    rendered = _helm.template(*VALUE_SETS[name])
    kinds: dict[str, set[str]] = {}
    for source, obj in zip(rendered.sources, rendered.objects):
        kinds.setdefault(source, set()).add(obj["kind"])
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert all(len(k) == 1 for k in kinds.values()), kinds
    templates = {p.name for p in (_helm.CHART / "templates").iterdir()}
    assert {"_helpers.tpl", "NOTES.txt"} <= templates


def test_default_values_watch_all_namespaces_through_a_cluster_role() -> None:
    r = _helm.template()
    role = r.one("ClusterRole", OPERATOR_NAME)
    assert role["rules"] == OPERATOR_RULES
    binding = r.one("ClusterRoleBinding", OPERATOR_NAME)
    assert binding["roleRef"]["name"] == OPERATOR_NAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR_NAME,
                                    "namespace": "flowpod-system"}]
    # No per-namespace Role for the watched objects; the Lease's own Role is test_helm_ha's.
    operator_roles = [o for o in r.of_kind("Role")
                      if o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
                      and o["metadata"]["name"] != f"{OPERATOR_NAME}-leader-election"]
    assert operator_roles == []
    args = _container(r)["args"]
    assert not any(a.startswith("--namespace") for a in args)


def test_namespace_list_gives_one_role_per_namespace_and_no_cluster_role() -> None:
    r = _helm.template(*VALUE_SETS["namespaced"])
    assert r.of_kind("ClusterRole") == [] and r.of_kind("ClusterRoleBinding") == []
    for ns in ("team-a", "team-b"):
        assert r.one("Role", OPERATOR_NAME, ns)["rules"] == OPERATOR_RULES
        binding = r.one("RoleBinding", OPERATOR_NAME, ns)
        assert binding["subjects"][0]["namespace"] == "flowpod-system"
    assert "batch" not in {o["metadata"]["namespace"] for o in r.of_kind("Role")
                           if o["metadata"]["name"] == OPERATOR_NAME}
    assert [a for a in _container(r)["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_flow_run_pods_get_their_flow_runs_and_nothing_else(name: str) -> None:
    r = _helm.template(*VALUE_SETS[name])
    expected = {"flowpod-system", *{"default": [], "namespaced": ["team-a", "team-b", "batch"],
                                    "custom-images": [], "limits": [], "ha": []}[name]}
    roles = [o for o in r.of_kind("Role") if o["metadata"]["name"].endswith("-flow-run")]
    assert {o["metadata"]["namespace"] for o in roles} == expected
    for role in roles:
        assert role["rules"] == FLOW_RUN_RULES
    accounts = {o["metadata"]["namespace"] for o in r.of_kind("ServiceAccount")
                if o["metadata"]["name"] == contract.DEFAULT_SERVICE_ACCOUNT}
    assert accounts == expected
    for binding in r.of_kind("RoleBinding"):
        if binding["metadata"]["name"].endswith("-flow-run"):
            ns = binding["metadata"]["namespace"]
            assert binding["subjects"] == [{"kind": "ServiceAccount",
                                            "name": contract.DEFAULT_SERVICE_ACCOUNT,
                                            "namespace": ns}]
    text = json.dumps([o for o in r.objects if o["kind"] in {"Role", "ClusterRole"}])
    assert "secrets" not in text and '"*"' not in text, "no Secrets, no wildcards"


def _container(r: _helm.Rendered) -> dict:
    deployments = r.of_kind("Deployment")
    assert len(deployments) == 1
    (container,) = deployments[0]["spec"]["template"]["spec"]["containers"]
    return container


def test_operator_pod_is_locked_down_and_probed_on_healthz() -> None:
    r = _helm.template()
    deployment = r.of_kind("Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    # With leader election (the default) a new pod stands by until the old one lets go.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert pod["serviceAccountName"] == OPERATOR_NAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = _container(r)
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
    assert f"--health-port={port}" in c["args"]
    assert f"--service-account={contract.DEFAULT_SERVICE_ACCOUNT}" in c["args"]
    assert "--log-level=INFO" in c["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_operator_flags_parse_with_the_operators_own_parser(name: str) -> None:
    from flowpod_operator import running

    c = _container(_helm.template(*VALUE_SETS[name]))
    options = running.options_from_args(running.build_parser().parse_args(c["args"]))
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
    assert options.health_port == port
    assert list(options.namespaces) == {"namespaced": ["team-a", "team-b"]}.get(name, [])
    assert options.service_account == contract.DEFAULT_SERVICE_ACCOUNT
    limited = name == "limits"
    assert options.max_concurrent_runs == (3 if limited else None)
    assert options.ttl_seconds_after_finished == (0 if limited else None)


def test_operator_command_is_the_operator_image_entrypoint() -> None:
    parser = DockerfileParser(str(REPO / "operator" / "Dockerfile"))
    entry = [i["value"] for i in parser.structure if i["instruction"] == "ENTRYPOINT"][-1]
    assert _container(_helm.template())["command"] == json.loads(entry)


def test_image_tags_fall_back_to_app_version_and_follow_values() -> None:
    app = _chart_meta()["appVersion"]
    c = _container(_helm.template())
    assert c["image"] == f"flowpod/operator:{app}"
    r = _helm.template(*VALUE_SETS["custom-images"])
    c = _container(r)
    assert c["image"] == "registry.example.com/flowpod/operator:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    pod = r.of_kind("Deployment")[0]["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert r.of_kind("Deployment")[0]["metadata"]["name"] == "fp-operator"


@pytest.mark.parametrize("override,message", [
    ("watchNamespace={a}", "additional properties 'watchNamespace' not allowed"),
    ("operator.replicas=two", "at '/operator/replicas': got string, want integer"),
    ("operator.replicas=-1", "at '/operator/replicas': minimum: got -1, want 0"),
    ("operator.resources.request.cpu=1", "additional properties 'request' not allowed"),
    ("image.engine.tags=1", "additional properties 'tags' not allowed"),
    ("watchNamespaces={Team_A}", "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
    ("flowRuns.rbac=maybe", "at '/flowRuns/rbac': got string, want boolean"),
    ("operator.logLevel=verbose", "at '/operator/logLevel': value must be one of"),
    ("operator.maxConcurrentRuns=0", "at '/operator/maxConcurrentRuns': minimum: got 0, want 1"),
    ("operator.ttlSecondsAfterFinished=-1",
     "at '/operator/ttlSecondsAfterFinished': minimum: got -1, want 0"),
], ids=["root-typo", "wrong-type", "negative-replicas", "nested-typo", "image-typo",
        "bad-namespace",
        "bool-type", "log-level", "no-slots", "negative-ttl"])
def test_bad_values_are_refused_with_a_message_naming_them(override: str, message: str) -> None:
    out = _helm.run("template", "rel", str(_helm.CHART), "--kube-version", _helm.KUBE_VERSION,
                    "--set", override, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr, out.stderr


def test_schema_is_closed_everywhere_it_owns_the_keys() -> None:
    schema = json.loads((_helm.CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert '"additionalProperties": true' not in json.dumps(schema)

    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} is open"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")

    walk(schema, "<root>")


def test_every_value_has_a_comment() -> None:
    # A key is documented by a comment right above it, or by one above an enclosing key whose
    # whole map is the value (e.g. `resources:`); bare grouping keys (`image:`) need none.
    lines = (_helm.CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z]\w*):\s*(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = (i > 0 and lines[i - 1].strip().startswith("#")) or any(
            d for _, d in stack)
        if m.group(3) != "" or not _has_children(lines, i, indent):
            assert documented, f"values.yaml line {i + 1}: `{line.strip()}` has no comment"
        stack.append((indent, documented))


def _has_children(lines: list[str], i: int, indent: int) -> bool:
    following = next((x for x in lines[i + 1:] if x.strip() and not x.strip().startswith("#")),
                     "")
    return len(following) - len(following.lstrip()) > indent


def test_chart_crds_equal_top_level_crds() -> None:
    top, chart = REPO / "crds", _helm.CHART / "crds"
    top_files = sorted(p.name for p in top.glob("*.yaml"))
    assert top_files, "crds/ holds no CRDs yet (they are generated from the models)"
    assert sorted(p.name for p in chart.glob("*.yaml")) == top_files, (
        "charts/flowpod/crds/ differs from crds/; sync with "
        "`cp crds/*.yaml charts/flowpod/crds/`")
    _, mismatch, errors = filecmp.cmpfiles(top, chart, top_files, shallow=False)
    assert mismatch == [] and errors == [], (
        f"charts/flowpod/crds/ is stale for {mismatch or errors}; sync with "
        "`cp crds/*.yaml charts/flowpod/crds/`")
