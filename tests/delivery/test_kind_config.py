"""kind-config.yaml against kind's v1alpha4 Cluster API (sigs.k8s.io/kind/pkg/apis/config/v1alpha4).

Role: kind is not installed here, so this test carries the documented v1alpha4 field set as a
closed JSON schema (every object `additionalProperties: false`, so an unknown or misspelt field
anywhere fails, as kind's strict decoder would) and checks the README's needs: one control
plane, at least one worker, and the cluster name `kind load docker-image --name` uses. The
commands in the file's comment must be the README's kind path, flag for flag.
Called by pytest (hermetic).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from delivery import _docs

CONFIG = Path(__file__).resolve().parents[2] / "kind-config.yaml"


def _closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


_STR = {"type": "string"}
_STRINGS = {"type": "array", "items": _STR}
_PORT = {"type": "integer", "minimum": -1, "maximum": 65535}
_PATCH_6902 = _closed({"group": _STR, "version": _STR, "kind": _STR, "patch": _STR},
                      ("version", "kind", "patch"))
_MOUNT = _closed({
    "containerPath": _STR, "hostPath": _STR, "readOnly": {"type": "boolean"},
    "selinuxRelabel": {"type": "boolean"},
    "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
})
_PORT_MAPPING = _closed({
    "containerPort": _PORT, "hostPort": _PORT, "listenAddress": _STR,
    "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
})
_NODE = _closed({
    "role": {"enum": ["control-plane", "worker"]},
    "image": _STR,
    "labels": {"type": "object", "additionalProperties": _STR},
    "extraMounts": {"type": "array", "items": _MOUNT},
    "extraPortMappings": {"type": "array", "items": _PORT_MAPPING},
    "kubeadmConfigPatches": _STRINGS,
    "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
})
_NETWORKING = _closed({
    "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
    "apiServerPort": _PORT, "apiServerAddress": _STR,
    "podSubnet": _STR, "serviceSubnet": _STR,
    "disableDefaultCNI": {"type": "boolean"},
    "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
    "dnsSearch": _STRINGS,
})
# kind's v1alpha4 Cluster type, field for field.
KIND_V1ALPHA4_CLUSTER = _closed({
    "kind": {"const": "Cluster"},
    "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
    "name": _STR,
    "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
    "runtimeConfig": {"type": "object", "additionalProperties": _STR},
    "nodes": {"type": "array", "items": _NODE},
    "networking": _NETWORKING,
    "kubeadmConfigPatches": _STRINGS,
    "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_6902},
    "containerdConfigPatches": _STRINGS,
    "containerdConfigPatchesJSON6902": _STRINGS,
}, ("kind", "apiVersion"))


def _errors(doc: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(KIND_V1ALPHA4_CLUSTER)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def config() -> dict:
    docs = list(yaml.safe_load_all(CONFIG.read_text()))
    assert len(docs) == 1, "kind-config.yaml must hold exactly one Cluster document"
    return docs[0]


def test_kind_config_uses_only_v1alpha4_cluster_fields(config: dict) -> None:
    assert _errors(config) == []


def test_kind_config_has_one_control_plane_and_a_worker(config: dict) -> None:
    roles = [node.get("role", "control-plane") for node in config["nodes"]]
    assert roles.count("control-plane") == 1
    assert roles.count("worker") >= 1


def test_kind_config_name_matches_the_readme_kind_path(config: dict) -> None:
    readme = (CONFIG.parent / "README.md").read_text()
    assert config["name"] == "flowpod"
    assert "kind create cluster --config kind-config.yaml" in readme
    assert "kind load docker-image --name flowpod" in readme


def test_kind_config_comment_shows_the_readme_kind_path_commands() -> None:
    (block,) = _docs.commented_blocks(CONFIG.read_text())
    assert _docs.commands(block) == _docs.kind_path_commands()


def test_kind_path_installs_the_flow_run_account_where_it_applies_runs() -> None:
    # A run in a namespace without the flow-run ServiceAccount never starts a pod
    # (PendingTimeout), so the chart must be told about the namespace the examples go to.
    commands = _docs.kind_path_commands()
    (helm,) = [c for c in commands if c[:2] == ["helm", "install"]]
    applies = [c for c in commands if c[0] == "kubectl" and "apply" in c]
    assert applies
    sets = _docs.option(helm, "--set")
    flow_run_namespaces = set(_docs.option(helm, "--namespace"))
    for item in sets:
        if item.startswith("flowRuns.namespaces="):
            flow_run_namespaces |= set(item.split("=", 1)[1].strip("{}").split(","))
    for apply in applies:
        namespace = (_docs.option(apply, "-n") + _docs.option(apply, "--namespace")
                     or ["default"])[0]
        assert namespace in flow_run_namespaces, (apply, sets)


@pytest.mark.parametrize("mutate,where", [
    (lambda c: c.update(nodess=[]), "<root>"),
    (lambda c: c["nodes"][1].update(lables={"a": "b"}), "nodes.1"),
    (lambda c: c["nodes"][0].update(role="master"), "nodes.0.role"),
    (lambda c: c.update(networking={"kubeProxyMode": "ebpf"}), "networking.kubeProxyMode"),
    (lambda c: c["nodes"][1].update(extraMounts=[{"hostpath": "/x"}]), "nodes.1.extraMounts.0"),
], ids=["root-typo", "node-typo", "bad-role", "bad-proxy-mode", "nested-typo"])
def test_schema_rejects_unknown_fields_at_any_depth(config: dict, mutate, where: str) -> None:
    # The checker itself must be able to fail, or the test above proves nothing.
    bad = copy.deepcopy(config)
    mutate(bad)
    errors = _errors(bad)
    assert errors and any(e.startswith(where + ":") for e in errors), errors
