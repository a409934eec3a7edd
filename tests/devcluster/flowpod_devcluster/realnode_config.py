"""Configuration of the real container node (realnode.py): containerd's config.toml, the
kubelet's KubeletConfiguration, the loopback-only CNI and registry settings, the private mount
namespace wrapper, and the MutatingAdmissionPolicy that gives the node's pods the host network.
Each piece says why it departs from a default; realnode.py's docstring gives the two rules of
this machine behind them (host state untouched, traffic on loopback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from flowpod_devcluster import pki

if TYPE_CHECKING:
    from flowpod_devcluster.plane import Cluster
    from flowpod_devcluster.realnode import RealNode

__all__ = ["NODE_NAME", "NODE_LABEL", "KERNEL_TUNABLES", "containerd_config", "kubelet_config",
           "write_configs", "write_network_configs", "namespace_wrapper", "admission_policy"]

NODE_NAME = "flowpod-containerd"
# Pods land on the node only when they select it and tolerate its taint.
NODE_LABEL = ("flowpod.io/node", "containerd")
# What the kubelet would otherwise write into /proc/sys for the whole machine.
KERNEL_TUNABLES = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                    "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                    "kernel/keys/root_maxbytes": "25000000"}


def containerd_config(node: RealNode, pause: str) -> str:
    d = node.dir
    return f"""version = 3
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{node.socket}"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine's root lacks CAP_SYS_RESOURCE, so nothing here may lower an OOM score below
  # containerd's own (the kubelet asks -998 for sandboxes); clamp instead of failing.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{node.bin_dir / 'runc'}"
        Root = "{d / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{node.bin_dir / 'cni'}"]
    conf_dir = "{d / 'cni'}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{d / 'certs.d'}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def kubelet_config(node: RealNode, c: Cluster, port: int) -> dict:
    p = c.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": port, "readOnlyPort": 0, "healthzPort": 0,
        "tlsCertFile": p["kubelet-serving.crt"], "tlsPrivateKeyFile": p["kubelet-serving.key"],
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": p["ca.crt"]}},
        "authorization": {"mode": "Webhook"},
        # This machine has cgroup v1 only and no systemd; 1.35+ kubelets refuse v1 unless told.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "podLogsDir": str(node.dir / "pod-logs"),
        "registerWithTaints": [{"key": NODE_LABEL[0], "value": NODE_LABEL[1],
                                "effect": "NoSchedule"}],
        # A shared, busy test machine: never evict or garbage-collect the only images there are.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "resolvConf": "/etc/resolv.conf",
        "protectKernelDefaults": False, "syncFrequency": "10s",
    }


def write_configs(node: RealNode, c: Cluster, pause: str, kubelet_port: int) -> None:
    d = node.dir
    for sub in ("cni", "certs.d/_default", "pod-logs", "kubelet", "tunables"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "containerd.toml").write_text(containerd_config(node, pause))
    write_network_configs(node)
    (d / "kubelet-config.json").write_text(json.dumps(kubelet_config(node, c, kubelet_port)))
    pki.issue_client(c.state_dir / "pki", "containerd-node", cn=f"system:node:{NODE_NAME}",
                     org="system:nodes")
    pki.write_kubeconfig(d / "kubelet.kubeconfig", c.pki, server=c.api_url,
                         user=f"system:node:{NODE_NAME}", stem="containerd-node")
    for name, value in KERNEL_TUNABLES.items():
        (d / "tunables" / name.replace("/", ".")).write_text(value + "\n")


def write_network_configs(node: RealNode) -> None:
    d = node.dir
    for sub in ("cni", "certs.d/_default"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # Only loopback: a pod without the host network gets `lo` and nothing else.
    (d / "cni" / "10-loopback.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "flowpod-loopback-only",
         "plugins": [{"type": "loopback"}]}))
    # Every registry resolves to a closed loopback port: a pull fails fast, on this machine.
    (d / "certs.d" / "_default" / "hosts.toml").write_text(
        'server = "http://127.0.0.1:9"\n[host."http://127.0.0.1:9"]\n'
        '  capabilities = ["pull", "resolve"]\n')


def namespace_wrapper(node: RealNode) -> list[str]:
    """`unshare -m` into a private mount namespace, shadow the kernel tunables, then exec."""
    binds = "; ".join(
        f"mount --bind {node.dir / 'tunables' / name.replace('/', '.')} /proc/sys/{name}"
        for name in KERNEL_TUNABLES)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
            f'{binds}; exec "$@"', "sh"]


def admission_policy(c: Cluster) -> list[dict]:
    """The MutatingAdmissionPolicy (and its binding) giving this node's pods the host network
    and a loopback API address, for pods that select the node and nothing else."""
    env = [f'Object.spec.containers.env{{name: "{k}", value: "{v}"}}' for k, v in
           (("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", str(c.api_port)))]
    # With the host network a Pod's hostPort must equal its containerPort; defaulting, which
    # would set it, ran before this policy.
    ports = ("has(c.ports) ? c.ports.map(p, Object.spec.containers.ports{containerPort: "
             "p.containerPort, protocol: p.protocol, hostPort: p.containerPort}) : []")
    expression = (
        'Object{spec: Object.spec{hostNetwork: true, dnsPolicy: "Default", containers: '
        f'object.spec.containers.map(c, Object.spec.containers{{name: c.name, '
        f'env: [{", ".join(env)}], ports: {ports}}})}}}}')
    key, value = NODE_LABEL
    name = "flowpod-containerd-node-network"
    return [{
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"]}]},
            "matchConditions": [{"name": "selects-the-containerd-node", "expression":
                                 f"has(object.spec.nodeSelector) && "
                                 f"object.spec.nodeSelector.exists(k, k == '{key}' && "
                                 f"object.spec.nodeSelector[k] == '{value}')"}],
            "failurePolicy": "Fail", "reinvocationPolicy": "IfNeeded",
            "mutations": [{"patchType": "ApplyConfiguration",
                           "applyConfiguration": {"expression": expression}}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": name},
         "spec": {"policyName": name}}]
