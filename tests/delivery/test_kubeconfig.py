"""Kubeconfig resolution shared by the CLI and the operator (flowpod_kube.connecting).

Role: hermetic checks, through kubernetes-asyncio's own loaders, of --kubeconfig / KUBECONFIG
lists / ~/.kube/config / in-cluster order, kubectl's first-wins merge, context and namespace
selection, relative paths, embedded client certificates, token files, exec credential
plugins, and the errors for each misconfiguration. Certificates are generated on the fly
with `cryptography` (a dev dependency).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import stat
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flowpod_kube import connecting
from flowpod_kube.connecting import Connection, Target
from flowpod_kube.errors import KubeError


def load(target: Target, **where) -> Connection:
    return asyncio.run(connecting.connect(target, **where))


def bearer(connection: Connection) -> str | None:
    """The bearer token the next request would carry (None if it carries none)."""
    value = asyncio.run(connection.configuration.get_api_key_with_prefix("BearerToken"))
    return value.removeprefix("Bearer ") if value else None


def _self_signed(tmp: Path, stem: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem_key = tmp / f"{stem}.crt", tmp / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return crt, pem_key


def _config(path: Path, *, contexts: dict, current: str | None = None, users: dict | None = None,
            clusters: dict | None = None) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": n, "cluster": c} for n, c in (clusters or {}).items()],
           "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
           "contexts": [{"name": n, "context": c} for n, c in contexts.items()]}
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_list_merges_first_wins_and_skips_missing_files(tmp_path: Path) -> None:
    a = _config(tmp_path / "a", current="dev", contexts={
        "dev": {"cluster": "c1", "user": "u1", "namespace": "team"}},
        clusters={"c1": {"server": "https://one.test/"}}, users={"u1": {"token": "first"}})
    b = _config(tmp_path / "b", current="prod", contexts={
        "dev": {"cluster": "c2", "user": "u2"}, "prod": {"cluster": "c2", "user": "u2"}},
        clusters={"c2": {"server": "https://two.test"}}, users={"u1": {"token": "second"},
                                                               "u2": {"token": "prod"}})
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{a}:{b}"}
    config = load(Target(), env=env, home=tmp_path)
    assert (config.server, bearer(config), config.namespace) == ("https://one.test", "first",
                                                                 "team")
    assert "context 'dev'" in config.source
    prod = load(Target(context="prod", namespace="ops"), env=env, home=tmp_path)
    assert (prod.server, bearer(prod), prod.namespace) == ("https://two.test", "prod", "ops")


def test_flag_beats_env_and_home_default_is_used_last(tmp_path: Path) -> None:
    flag = _config(tmp_path / "flag", current="x", contexts={"x": {"cluster": "c"}},
                   clusters={"c": {"server": "https://flag.test"}})
    (tmp_path / ".kube").mkdir()
    _config(tmp_path / ".kube" / "config", current="x", contexts={"x": {"cluster": "c"}},
            clusters={"c": {"server": "https://home.test"}})
    env = {"KUBECONFIG": str(tmp_path / "nowhere")}
    assert load(Target(kubeconfig=flag), env=env, home=tmp_path).server == "https://flag.test"
    assert load(Target(), env={}, home=tmp_path).server == "https://home.test"
    assert load(Target(), env={}, home=tmp_path).namespace == "default"


@pytest.mark.parametrize("target,problem,fix", [
    (Target(context="nope"), "context 'nope' is not in kubeconfig", "use one of: x"),
    (Target(kubeconfig=Path("/no/such/file")), "kubeconfig '/no/such/file' does not exist",
     "--kubeconfig"),
])
def test_configuration_errors_say_what_to_fix(tmp_path: Path, target, problem, fix) -> None:
    kc = _config(tmp_path / "kc", current="x", contexts={"x": {"cluster": "c"}},
                 clusters={"c": {"server": "https://a.test"}})
    with pytest.raises(KubeError) as err:
        load(target, env={"KUBECONFIG": str(kc)}, home=tmp_path)
    assert problem in err.value.problem and fix in (err.value.fix or "")


def test_no_configuration_at_all_points_at_the_local_plane(tmp_path: Path) -> None:
    with pytest.raises(KubeError) as err:
        load(Target(), env={}, home=tmp_path, sa_dir=tmp_path / "sa")
    assert err.value.problem == "no Kubernetes configuration found"
    assert "make cluster-up" in err.value.fix


def test_embedded_client_cert_and_relative_ca_file_are_loaded(tmp_path: Path) -> None:
    ca, _ = _self_signed(tmp_path, "ca")
    crt, key = _self_signed(tmp_path, "client")
    (tmp_path / "sub").mkdir()
    kc = _config(tmp_path / "sub" / "kc", current="x", contexts={"x": {"cluster": "c",
                                                                      "user": "u"}},
                 clusters={"c": {"server": "https://a.test", "certificate-authority": "../ca.crt"}},
                 users={"u": {"client-certificate-data": base64.b64encode(crt.read_bytes())
                              .decode(), "client-key-data": base64.b64encode(key.read_bytes())
                              .decode()}})
    config = load(Target(kubeconfig=kc), env={}, home=tmp_path)
    tls = config.configuration
    verify = ssl.create_default_context(cafile=tls.ssl_ca_cert)  # as the client builds it
    verify.load_cert_chain(tls.cert_file, tls.key_file)
    ca_subjects = [c["subject"] for c in verify.get_ca_certs()]
    assert ((("commonName", "ca"),),) in ca_subjects
    assert bearer(config) is None


def test_token_file_is_reread_for_every_request(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    kc = _config(tmp_path / "kc", current="x", contexts={"x": {"cluster": "c", "user": "u"}},
                 clusters={"c": {"server": "https://a.test"}}, users={"u": {"tokenFile": "token"}})
    config = load(Target(kubeconfig=kc), env={}, home=tmp_path)
    assert bearer(config) == "one"
    token.write_text("two")
    assert bearer(config) == "two"


def test_exec_plugin_runs_once_and_gives_a_token(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!{sys.executable}\nimport json, os\n"
                      "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
                      "open(os.environ['CALLS'], 'a').write(info['kind'] + '\\n')\n"
                      "print(json.dumps({'apiVersion': info['apiVersion'], "
                      "'kind': 'ExecCredential', 'status': "
                      "{'token': 'from-' + os.environ['CLOUD']}}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    kc = _config(tmp_path / "kc", current="x", contexts={"x": {"cluster": "c", "user": "u"}},
                 clusters={"c": {"server": "https://a.test"}},
                 users={"u": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                       "command": str(plugin),
                                       "env": [{"name": "CLOUD", "value": "eks"}]}}})
    monkeypatch.setenv("CALLS", str(calls))  # the plugin inherits the process environment
    config = load(Target(kubeconfig=kc), env={}, home=tmp_path)
    assert bearer(config) == "from-eks"
    assert calls.read_text() == "ExecCredential\n"


def test_missing_exec_plugin_shows_its_install_hint(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    kc = _config(tmp_path / "kc", current="x", contexts={"x": {"cluster": "c", "user": "u"}},
                 clusters={"c": {"server": "https://a.test"}},
                 users={"u": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                       "command": "no-such-plugin-xyz",
                                       "installHint": "install the cloud CLI"}}})
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(KubeError) as err:
        load(Target(kubeconfig=kc), env={}, home=tmp_path)
    assert "'no-such-plugin-xyz' was not found" in err.value.problem
    assert err.value.fix == "install the cloud CLI"


def test_in_cluster_service_account_is_the_last_resort(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    ca, _ = _self_signed(tmp_path, "cluster-ca")
    (sa / "ca.crt").write_bytes(ca.read_bytes())
    (sa / "token").write_text("pod-token")
    (sa / "namespace").write_text("flows")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load(Target(), env=env, home=tmp_path, sa_dir=sa)
    assert (config.server, bearer(config), config.namespace) == ("https://10.96.0.1:443",
                                                                 "pod-token", "flows")
    assert config.source == "in-cluster service account"
    assert load(Target(namespace="x"), env=env, home=tmp_path, sa_dir=sa).namespace == "x"


def test_the_operator_prefers_its_service_account_to_a_kubeconfig(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    ca, _ = _self_signed(tmp_path, "cluster-ca")
    (sa / "ca.crt").write_bytes(ca.read_bytes())
    (sa / "token").write_text("pod-token")
    kc = _config(tmp_path / "kc", current="x", contexts={"x": {"cluster": "c"}},
                 clusters={"c": {"server": "https://a.test"}})
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
           "KUBECONFIG": str(kc)}
    assert load(Target(), env=env, home=tmp_path, sa_dir=sa).server == "https://a.test"
    operator = load(Target(), env=env, home=tmp_path, sa_dir=sa, in_cluster_first=True)
    assert operator.source == "in-cluster service account"
    assert load(Target(kubeconfig=kc), env=env, home=tmp_path, sa_dir=sa,
                in_cluster_first=True).server == "https://a.test"


def test_module_exports() -> None:
    assert sorted(connecting.__all__) == ["Connection", "SERVICE_ACCOUNT_DIR", "Target",
                                          "api_client", "connect", "http_settings"]


def test_http_settings_hand_a_connection_to_an_httpx_client() -> None:
    from kubernetes_asyncio import client

    config = client.Configuration(host="https://api.example:6443/")
    config.api_key["BearerToken"] = "Bearer first"
    config.verify_ssl = False
    rotated = iter(["second", "third"])
    config.refresh_api_key_hook = lambda c: c.api_key.update(BearerToken=f"Bearer {next(rotated)}")
    url, token, verify = connecting.http_settings(
        connecting.Connection(config, "team", "test"))
    assert (url, verify) == ("https://api.example:6443", False)
    assert [token(), token()] == ["second", "third"]  # the hook runs before each request
    config.refresh_api_key_hook = None
    config.api_key.clear()
    assert token() is None
