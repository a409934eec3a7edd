"""The chart's high availability, rendered by the real (pinned) helm: leader election on by
default (the operator's own parser reads the flags; the Lease's Role holds exactly
flowpod_operator._runtime.kubeapi.LEADER_ELECTION_RULES, in the release namespace only; the
pod's name is its identity; a FlowSchema puts Lease requests at APF's leader-election level), more than one replica with a PodDisruptionBudget, and more than
one replica refused without leader election. Hermetic: no cluster."""

from __future__ import annotations

import pytest

from delivery import _helm
from flowpod_operator import running
from flowpod_operator._runtime import kubeapi

OPERATOR = "rel-flowpod-operator"
LEASE_ROLE = f"{OPERATOR}-leader-election"


def _container(rendered: _helm.Rendered) -> dict:
    (deployment,) = rendered.of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _options(rendered: _helm.Rendered) -> running.OperatorOptions:
    return running.options_from_args(running.build_parser().parse_args(
        _container(rendered)["args"]))


def test_leader_election_is_on_by_default_with_its_own_role():
    rendered = _helm.template()
    options = _options(rendered)
    assert options.leader_election
    lease = options.lease("unused")
    assert (lease.name, lease.namespace) == (OPERATOR, "flowpod-system")
    assert (lease.duration_seconds, lease.renew_deadline_seconds,
            lease.retry_period_seconds) == (15, 10, 2)
    role = rendered.one("Role", LEASE_ROLE, "flowpod-system")
    assert role["rules"] == [dict(rule) for rule in kubeapi.LEADER_ELECTION_RULES]
    binding = rendered.one("RoleBinding", LEASE_ROLE, "flowpod-system")
    assert binding["roleRef"]["name"] == LEASE_ROLE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR,
                                    "namespace": "flowpod-system"}]
    # Leases are granted nowhere else (the watched namespaces' rules have none).
    leases = [o["metadata"]["name"] for o in rendered.of_kind("Role")
              + rendered.of_kind("ClusterRole")
              if any("leases" in rule["resources"] for rule in o["rules"])]
    assert leases == [LEASE_ROLE]
    env = {e["name"]: e for e in _container(rendered)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert rendered.of_kind("PodDisruptionBudget") == []


def test_lease_requests_get_the_leader_election_priority_level():
    (schema,) = _helm.template().of_kind("FlowSchema")
    spec = schema["spec"]
    assert spec["priorityLevelConfiguration"] == {"name": "leader-election"}
    # Before the built-in schemas that would otherwise match a service account first.
    assert spec["matchingPrecedence"] < 9000
    (rule,) = spec["rules"]
    assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {
        "name": OPERATOR, "namespace": "flowpod-system"}}]
    (lease_rule,) = kubeapi.LEADER_ELECTION_RULES
    assert rule["resourceRules"] == [{**lease_rule, "namespaces": ["flowpod-system"]}]


def test_replicas_with_a_disruption_budget_and_the_chosen_timings():
    rendered = _helm.template("operator.replicas=3", "operator.leaderElection.leaseDuration=20",
                              "operator.leaderElection.renewDeadline=12",
                              "operator.leaderElection.retryPeriod=3",
                              "operator.extraEnv[0].name=EXTRA",
                              "operator.extraEnv[0].value=1")
    (deployment,) = rendered.of_kind("Deployment")
    assert deployment["spec"]["replicas"] == 3
    lease = _options(rendered).lease("unused")
    assert (lease.duration_seconds, lease.renew_deadline_seconds,
            lease.retry_period_seconds) == (20, 12, 3)
    assert [e["name"] for e in _container(rendered)["env"]] == ["POD_NAME", "EXTRA"]
    pdb = rendered.one("PodDisruptionBudget", OPERATOR, "flowpod-system")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_without_leader_election_one_replica_and_recreate():
    rendered = _helm.template("operator.leaderElection.enabled=false")
    assert not _options(rendered).leader_election
    assert not any(a.startswith("--lease") for a in _container(rendered)["args"])
    (deployment,) = rendered.of_kind("Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert [o for o in rendered.of_kind("Role") if o["metadata"]["name"] == LEASE_ROLE] == []
    assert rendered.of_kind("FlowSchema") == []


@pytest.mark.parametrize("override, message", [
    ("operator.replicas=2", "operator.replicas > 1 needs operator.leaderElection.enabled=true"),
    ("operator.leaderElection.leaseDuration=soon",
     "at '/operator/leaderElection/leaseDuration': got string, want integer"),
    ("operator.leaderElection.lease=15", "additional properties 'lease' not allowed"),
])
def test_unsafe_or_mistyped_values_are_refused(override, message):
    out = _helm.run("template", "rel", str(_helm.CHART), "--kube-version", _helm.KUBE_VERSION,
                    "--set", "operator.leaderElection.enabled=false", "--set", override,
                    check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_shards_give_one_deployment_and_lease_each():
    rendered = _helm.template("operator.shards=2", "operator.replicas=2")
    deployments = rendered.of_kind("Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [f"{OPERATOR}-shard-0",
                                                            f"{OPERATOR}-shard-1"]
    for index, deployment in enumerate(deployments):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        options = running.options_from_args(running.build_parser().parse_args(
            container["args"]))
        assert (options.shard.index, options.shard.count) == (index, 2)
        assert options.lease("unused").name == f"{OPERATOR}-shard-{index}"
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["flowpod.io/shard"] == str(index)
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        pdb = rendered.one("PodDisruptionBudget", f"{OPERATOR}-shard-{index}", "flowpod-system")
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    # One shard (the default) keeps the unsharded names and selector.
    (single,) = _helm.template().of_kind("Deployment")
    assert single["metadata"]["name"] == OPERATOR
    assert "flowpod.io/shard" not in single["spec"]["selector"]["matchLabels"]
    assert not any(a.startswith("--shard") for a in _container(_helm.template())["args"])
