"""A pod's identity is real: the node mounts a bound service-account token (TokenRequest)
in a private mount namespace, in-cluster config works, and RBAC decides what it may do."""

from __future__ import annotations

import textwrap
from pathlib import Path

from flowpod_devcluster import manifests, plane, waiting

_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Ordinary in-cluster configuration: env for the address, mounted files for the rest.
_IN_CLUSTER = f"""
    import os, ssl, httpx
    sa = "{_SA_DIR}"
    base = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"],
                              os.environ["KUBERNETES_SERVICE_PORT"])
    token = open(sa + "/token").read()
    namespace = open(sa + "/namespace").read()
    tls = ssl.create_default_context(cafile=sa + "/ca.crt")
    with httpx.Client(base_url=base, verify=tls,
                      headers={{"Authorization": "Bearer " + token}}) as api:
        review = api.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          json={{"apiVersion": "authentication.k8s.io/v1",
                                "kind": "SelfSubjectReview"}})
        print("user", review.json()["status"]["userInfo"]["username"])
        print("namespace", namespace)
        print("list-secrets", api.get(f"/api/v1/namespaces/{{namespace}}/secrets").status_code)
"""


def _run_to_end(cluster: plane.Cluster, namespace: str, manifest: dict) -> tuple[dict, str]:
    waiting.apply(cluster, namespace, manifest)
    name = manifest["metadata"]["name"]
    pod = waiting.wait_for_pod(cluster, namespace, name,
                               lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                               what="a terminal phase")
    logs = cluster.kubectl("logs", "-n", namespace, name).stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    return pod, logs


def test_pod_token_is_refused_list_secrets(cluster: plane.Cluster, namespace: str) -> None:
    _, logs = _run_to_end(cluster, namespace,
                          manifests.pod("whoami", manifests.python(_IN_CLUSTER)))
    assert logs.splitlines() == [f"user system:serviceaccount:{namespace}:default",
                                 f"namespace {namespace}", "list-secrets 403"]


def test_rbac_grant_lets_the_pod_list_secrets(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(
        cluster, namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "secret-reader"},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader-reads"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "secret-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    _, logs = _run_to_end(cluster, namespace, manifests.pod(
        "reader", manifests.python(_IN_CLUSTER), serviceAccountName="reader"))
    assert logs.splitlines() == [f"user system:serviceaccount:{namespace}:reader",
                                 f"namespace {namespace}", "list-secrets 200"]


def test_token_is_bound_to_the_pod_and_private(cluster: plane.Cluster, namespace: str) -> None:
    code = f"""
        import base64, json
        token = open("{_SA_DIR}/token").read()
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        print(json.dumps(claims["kubernetes.io"]["pod"]))
    """
    pod, logs = _run_to_end(cluster, namespace, manifests.pod("bound", manifests.python(code)))
    assert logs.strip() == f'{{"name": "bound", "uid": "{pod["metadata"]["uid"]}"}}'
    # The mount lived only in the container's mount namespace.
    assert not Path(_SA_DIR, "token").exists()


def test_automount_false_mounts_nothing(cluster: plane.Cluster, namespace: str) -> None:
    code = f"import os; print(os.path.exists('{_SA_DIR}/token'))"
    _, logs = _run_to_end(cluster, namespace, manifests.pod(
        "notoken", manifests.python(code), automountServiceAccountToken=False))
    assert logs.strip() == "False"


def test_volume_over_the_checkout_hides_neither_the_image_nor_other_volumes(
        cluster: plane.Cluster, namespace: str) -> None:
    # An emptyDir at the checkout's top directory (/work here, /tmp in a CI clone under /tmp)
    # covers the host paths that stand for the image (venv, WORKDIR) and the node's own
    # volume sources; in a real container neither lives under the volume.
    top = "/" + plane.REPO_ROOT.parts[1]
    waiting.apply(cluster, namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "settings"},
                                       "data": {"greeting": "hello"}})
    code = f"""
        import os, flowpod
        print(sorted(os.listdir("{top}")) == ["{plane.REPO_ROOT.parts[2]}"])
        print(open("/etc/settings/greeting").read())
        print(os.path.exists("{_SA_DIR}/token"))
        print(os.path.samefile(os.getcwd(), "{plane.REPO_ROOT}"))
    """
    spec = manifests.pod("shadowed", ["python", "-c", textwrap.dedent(code)],
                         volumes=[{"name": "scratch", "emptyDir": {}},
                                  {"name": "settings", "configMap": {"name": "settings"}}],
                         container_extra={"volumeMounts": [
                             {"name": "scratch", "mountPath": top},
                             {"name": "settings", "mountPath": "/etc/settings"}]})
    spec["spec"]["containers"][0]["image"] = "flowpod/engine:dev"
    _, logs = _run_to_end(cluster, namespace, spec)
    assert logs.split() == ["True", "hello", "True", "True"]
