"""A pod's volumes, materialised as host directories, and the bind mounts of each container.

Used by podworkers (prepare once per pod, before any container starts) and containerrunning
(mounts for one container). Supported: emptyDir, hostPath, configMap, secret, downwardAPI and
projected (serviceAccountToken via the TokenRequest API bound to the pod, configMap, secret,
downwardAPI) — the last is what the ServiceAccount admission plugin adds as kube-api-access-*,
so a pod gets token, ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount
exactly when the API server decided it should (automountServiceAccountToken honoured).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flowpod_devcluster.node import environment, kubeapi

__all__ = ["Mount", "mounts_for", "prepare"]

_DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool
    # Where the launcher parked `source` inside the container's mount namespace, if it did.
    staged: str | None = None


def _safe_relative(path: str, where: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise environment.ConfigError(f"{where}: path {path!r} must be relative, without '..'")
    return rel


def _write(root: Path, files: dict[str, tuple[bytes, int]], where: str) -> None:
    for rel, (content, mode) in files.items():
        target = root / _safe_relative(rel, where)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def _select(data: dict[str, bytes], items: list[dict] | None, mode: int, where: str,
            optional: bool) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    out = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise environment.ConfigError(f"{where}: key {item['key']!r} not found")
        out[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return out


async def _object_files(objects: environment.Objects, kind: str, name: str, source: dict,
                        mode: int, where: str) -> dict[str, tuple[bytes, int]]:
    optional = bool(source.get("optional"))
    data = await objects.files(kind, name, optional)
    if data is None:
        return {}
    return _select(data, source.get("items"), mode, where, optional)


def _downward_files(pod: dict, items: list[dict], mode: int,
                    facts: environment.PodFacts) -> dict[str, tuple[bytes, int]]:
    out = {}
    for item in items or []:
        if "fieldRef" not in item:
            raise environment.ConfigError("downwardAPI: only fieldRef items are supported")
        value = environment.field_value(pod, item["fieldRef"]["fieldPath"], facts)
        out[item["path"]] = (value.encode(), item.get("mode", mode))
    return out


async def _token(api: kubeapi.Api, pod: dict, source: dict) -> bytes:
    meta = pod["metadata"]
    spec: dict = {"expirationSeconds": int(source.get("expirationSeconds") or 3600),
                  "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                     "name": meta["name"], "uid": meta["uid"]}}
    if source.get("audience"):
        spec["audiences"] = [source["audience"]]
    account = pod["spec"].get("serviceAccountName") or "default"
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    try:
        answer = await api.post(path, {"apiVersion": "authentication.k8s.io/v1",
                                       "kind": "TokenRequest", "spec": spec})
    except kubeapi.ApiError as exc:
        raise environment.ConfigError(f"TokenRequest for serviceaccount {account}: {exc}") \
            from exc
    return answer["status"]["token"].encode()


async def _projected(api: kubeapi.Api, objects: environment.Objects, pod: dict, volume: dict,
                     facts: environment.PodFacts) -> dict[str, tuple[bytes, int]]:
    mode = volume.get("defaultMode", _DEFAULT_MODE)
    files: dict[str, tuple[bytes, int]] = {}
    for source in volume.get("sources") or []:
        if "serviceAccountToken" in source:
            sat = source["serviceAccountToken"]
            files[sat["path"]] = (await _token(api, pod, sat), mode)
        elif "configMap" in source:
            cm = source["configMap"]
            files |= await _object_files(objects, "ConfigMap", cm.get("name", ""), cm, mode,
                                         "projected configMap")
        elif "secret" in source:
            sec = source["secret"]
            files |= await _object_files(objects, "Secret", sec.get("name", ""), sec, mode,
                                         "projected secret")
        elif "downwardAPI" in source:
            files |= _downward_files(pod, source["downwardAPI"].get("items"), mode, facts)
        else:
            raise environment.ConfigError(f"projected source {sorted(source)} not supported "
                                          "by the flowpod test node")
    return files


async def _materialise(api: kubeapi.Api, objects: environment.Objects, pod: dict, volume: dict,
                       target: Path, facts: environment.PodFacts) -> Path:
    name = volume["name"]
    if "hostPath" in volume:
        host = Path(volume["hostPath"]["path"])
        if volume["hostPath"].get("type") == "DirectoryOrCreate":
            host.mkdir(parents=True, exist_ok=True)
        return host
    target.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        return target
    if "configMap" in volume:
        cm = volume["configMap"]
        files = await _object_files(objects, "ConfigMap", cm.get("name", ""), cm,
                                    cm.get("defaultMode", _DEFAULT_MODE), f"volume {name}")
    elif "secret" in volume:
        sec = volume["secret"]
        files = await _object_files(objects, "Secret", sec.get("secretName", ""), sec,
                                    sec.get("defaultMode", _DEFAULT_MODE), f"volume {name}")
    elif "downwardAPI" in volume:
        dapi = volume["downwardAPI"]
        files = _downward_files(pod, dapi.get("items"), dapi.get("defaultMode", _DEFAULT_MODE),
                                facts)
    elif "projected" in volume:
        files = await _projected(api, objects, pod, volume["projected"], facts)
    else:
        kinds = sorted(set(volume) - {"name"})
        raise environment.ConfigError(f"volume {name}: type {kinds} is not supported by the "
                                      "flowpod test node")
    _write(target, files, f"volume {name}")
    return target


async def prepare(api: kubeapi.Api, pod: dict, volumes_dir: Path,
                  facts: environment.PodFacts) -> dict[str, Path]:
    """Materialise every volume of ``pod`` under ``volumes_dir``; name -> host path."""
    objects = environment.Objects(api, pod["metadata"]["namespace"])
    if volumes_dir.exists():
        shutil.rmtree(volumes_dir)
    out = {}
    for volume in pod["spec"].get("volumes") or []:
        out[volume["name"]] = await _materialise(api, objects, pod, volume,
                                                 volumes_dir / volume["name"], facts)
    return out


def mounts_for(container: dict, volumes: dict[str, Path]) -> list[Mount]:
    """The bind mounts for ``container``, parents before children."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise environment.ConfigError(f"volumeMount {vm['name']!r}: no such volume")
        source = volumes[vm["name"]]
        if vm.get("subPath"):
            source = source / _safe_relative(vm["subPath"], "volumeMount.subPath")
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(Mount(source=source, target=vm["mountPath"],
                            read_only=bool(vm.get("readOnly"))))
    return sorted(mounts, key=lambda m: len(PurePosixPath(m.target).parts))
