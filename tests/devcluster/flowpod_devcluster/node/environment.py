"""A container's environment as the kubelet builds it: envFrom, env with `$(VAR)` expansion,
and valueFrom fieldRef / resourceFieldRef / secretKeyRef / configMapKeyRef.

Used by containerrunning (env and command expansion) and volumes (downwardAPI items share
`field_value`). Secrets and config maps are read through the API with the node's identity,
which the Node authorizer allows only for objects that pods bound to this node reference.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass

from flowpod_devcluster.node import kubeapi, quantities

__all__ = ["ConfigError", "Objects", "PodFacts", "build", "expand", "field_value"]

_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


class ConfigError(Exception):
    """The container cannot be configured yet (kubelet: CreateContainerConfigError)."""


@dataclass(frozen=True)
class PodFacts:
    """What fieldRefs may read that the pod object itself may not carry yet."""

    node_ip: str
    pod_ip: str
    allocatable_cpu: str
    allocatable_memory: str


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes a `$`, and
    references to undefined names are kept verbatim."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return _REFERENCE.sub(replace, text)


def _subscript(path: str, prefix: str) -> str | None:
    match = re.fullmatch(re.escape(prefix) + r"\['(.*)'\]", path)
    return match.group(1) if match else None


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


def field_value(pod: dict, path: str, facts: PodFacts) -> str:
    """The value of a downward-API fieldPath for ``pod``."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": facts.node_ip, "status.hostIPs": facts.node_ip,
        "status.podIP": facts.pod_ip, "status.podIPs": facts.pod_ip,
    }
    if path in simple:
        return simple[path]
    for prefix, key in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        values = meta.get(key) or {}
        if path == prefix:
            return _format_map(values)
        name = _subscript(path, prefix)
        if name is not None:
            return values.get(name, "")
    raise ConfigError(f"fieldRef: unsupported fieldPath {path!r}")


def _resource_value(pod: dict, container: dict, ref: dict, facts: PodFacts) -> str:
    name = ref.get("containerName") or container.get("name")
    target = next((c for c in pod["spec"].get("containers", []) + pod["spec"].get(
        "initContainers", []) if c.get("name") == name), None)
    if target is None:
        raise ConfigError(f"resourceFieldRef: no container named {name!r}")
    kind, _, resource = ref.get("resource", "").partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory",
                                                              "ephemeral-storage"):
        raise ConfigError(f"resourceFieldRef: unsupported resource {ref.get('resource')!r}")
    resources = target.get("resources") or {}
    raw = (resources.get(kind) or {}).get(resource)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(resource)
    if raw is None:
        # Like the kubelet: no limit means the node's allocatable.
        raw = {"cpu": facts.allocatable_cpu, "memory": facts.allocatable_memory}.get(resource,
                                                                                   "0")
    return quantities.scaled(quantities.parse(raw, field="resources"), ref.get("divisor"))


class Objects:
    """Secrets and config maps of one namespace, each fetched at most once per build."""

    def __init__(self, api: kubeapi.Api, namespace: str) -> None:
        self._api, self._ns, self._cache = api, namespace, {}

    async def files(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """The object's keys as raw bytes, or None when it is missing and ``optional``."""
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = await self._fetch(kind, name)
        found = self._cache[key]
        if found is None and not optional:
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return found

    async def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        found = await self.files(kind, name, optional)
        if found is None:
            return None
        return {k: v.decode(errors="replace") for k, v in found.items()}

    async def _fetch(self, kind: str, name: str) -> dict[str, bytes] | None:
        resource = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = await self._api.get(f"/api/v1/namespaces/{self._ns}/{resource}/{name}")
        except kubeapi.ApiError as exc:
            if exc.status == 404:
                return None
            # 403 happens briefly until the Node authorizer's graph has seen the binding.
            raise ConfigError(f"cannot read {kind} {self._ns}/{name}: {exc}") from exc
        return decode(obj)

    async def key(self, kind: str, ref: dict) -> str | None:
        optional = bool(ref.get("optional"))
        data = await self.data(kind, ref.get("name", ""), optional)
        if data is None:
            return None
        if ref.get("key") not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} "
                              f"{self._ns}/{ref.get('name')}")
        return data[ref["key"]]


def decode(obj: dict) -> dict[str, bytes]:
    """The values of a Secret or ConfigMap as bytes (Secret data and binaryData are base64)."""
    is_secret = obj.get("kind") == "Secret"
    out = {k: base64.b64decode(v) if is_secret else v.encode()
           for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v)
    return out


async def _value_from(source: dict, pod: dict, container: dict, facts: PodFacts,
                      objects: Objects) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"].get("fieldPath", ""), facts)
    if "resourceFieldRef" in source:
        return _resource_value(pod, container, source["resourceFieldRef"], facts)
    if "secretKeyRef" in source:
        return await objects.key("Secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return await objects.key("ConfigMap", source["configMapKeyRef"])
    raise ConfigError(f"valueFrom: unsupported source {sorted(source)}")


async def build(api: kubeapi.Api, pod: dict, container: dict, facts: PodFacts,
                service_env: Mapping[str, str]) -> dict[str, str]:
    """The variables Kubernetes sets for ``container`` (image ENV is merged by the caller)."""
    objects = Objects(api, pod["metadata"]["namespace"])
    env: dict[str, str] = dict(service_env)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref in (("ConfigMap", source.get("configMapRef")),
                          ("Secret", source.get("secretRef"))):
            if ref is not None:
                data = await objects.data(kind, ref.get("name", ""), bool(ref.get("optional")))
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = await _value_from(var["valueFrom"], pod, container, facts, objects)
            if value is None:
                continue
            env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    return env
