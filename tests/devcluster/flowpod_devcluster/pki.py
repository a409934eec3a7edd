"""The test cluster's PKI: a cluster CA, a front-proxy CA, serving and client certificates, the
service-account signing key pair, and the kubeconfigs built from them.

Called by plane.py when it starts a control plane in a fresh state directory. Everything is
issued for 127.0.0.1 (plus the node's own address), valid for a year, and written with 0600 keys.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "write_kubeconfig"]

_VALID = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of every file the control plane and the test node are started with."""

    dir: Path

    def __getitem__(self, name: str) -> str:
        return str(self.dir / name)


def _key() -> ec.EllipticCurvePrivateKey:
    # EC keys are generated in microseconds; RSA-2048 would cost ~0.1 s each for no benefit here.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
    )


def _make_ca(dir: Path, stem: str, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        _builder(_name(cn), _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    (dir / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(dir / f"{stem}.key", key)
    return cert, key


def _issue(dir: Path, stem: str, ca, *, cn: str, org: str | None = None,
           server_ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> None:
    ca_cert, ca_key = ca
    key = _key()
    usage = [ExtendedKeyUsageOID.SERVER_AUTH] if (server_ips or dns) else []
    usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(_name(cn, org), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    )
    if server_ips or dns:
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        sans += [x509.DNSName(name) for name in dns]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (dir / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(dir / f"{stem}.key", key)


def _service_account_keys(dir: Path) -> None:
    # Service-account tokens are RS256 by default, so this one key is RSA.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(dir / "sa.key", key)
    (dir / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def make_pki(dir: Path, *, node_name: str, node_ip: str) -> Pki:
    """Issue every certificate the plane and the test node need into ``dir``."""
    dir.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(dir, "ca", "flowpod-test-ca")
    front = _make_ca(dir, "front-proxy-ca", "flowpod-front-proxy-ca")
    api_dns = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local")
    _issue(dir, "apiserver", ca, cn="kube-apiserver",
           server_ips=("127.0.0.1", "10.96.0.1"), dns=api_dns)
    _issue(dir, "apiserver-kubelet-client", ca, cn="kube-apiserver-kubelet-client",
           org="system:masters")
    _issue(dir, "admin", ca, cn="flowpod-admin", org="system:masters")
    _issue(dir, "controller-manager", ca, cn="system:kube-controller-manager")
    _issue(dir, "scheduler", ca, cn="system:kube-scheduler")
    _issue(dir, "node", ca, cn=f"system:node:{node_name}", org="system:nodes")
    _issue(dir, "kubelet-serving", ca, cn=node_name,
           server_ips=tuple(dict.fromkeys(("127.0.0.1", node_ip))), dns=(node_name,))
    _issue(dir, "front-proxy-client", front, cn="front-proxy-client")
    _service_account_keys(dir)
    return Pki(dir)


def issue_client(dir: Path, stem: str, *, cn: str, org: str | None = None) -> None:
    """Issue one more client pair ``stem`` from the CA in ``dir`` (a second node's identity)."""
    ca_cert = x509.load_pem_x509_certificate((dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((dir / "ca.key").read_bytes(), password=None)
    _issue(dir, stem, (ca_cert, ca_key), cn=cn, org=org)


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def write_kubeconfig(path: Path, pki: Pki, *, server: str, user: str, stem: str) -> Path:
    """Write a kubeconfig that embeds the CA and the client pair ``stem`` for ``user``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flowpod-test", "cluster": {
            "server": server, "certificate-authority-data": _b64(pki["ca.crt"])}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(pki[f"{stem}.crt"]),
            "client-key-data": _b64(pki[f"{stem}.key"])}}],
        "contexts": [{"name": "flowpod-test", "context": {
            "cluster": "flowpod-test", "user": user, "namespace": "default"}}],
        "current-context": "flowpod-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
