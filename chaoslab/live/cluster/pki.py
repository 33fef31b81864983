"""The cluster's certificates: one CA, serving certificates with loopback SANs, client
certificates whose subject is the Kubernetes identity (CN = user, O = groups), and the
ServiceAccount signing key pair. ECDSA P-256 keys throughout.

Made with the ``cryptography`` package when it is installed, otherwise with ``openssl``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslab.live.cluster.errors import ClusterError

__all__ = ["CertSpec", "Pki", "have_cryptography"]

#: long enough for any drill; a cluster is rebuilt from scratch by every ``up``
VALIDITY = dt.timedelta(days=30)


def have_cryptography() -> bool:
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class CertSpec:
    """One certificate: ``name`` gives the file names (name.crt, name.key)."""

    name: str
    cn: str
    orgs: tuple[str, ...] = ()
    sans: tuple[str, ...] = ()  # IP addresses or DNS names
    server: bool = False
    client: bool = False


@dataclass
class Pki:
    """Certificates under ``dir``; ``backend`` is "cryptography" or "openssl"."""

    dir: Path
    backend: str = field(
        default_factory=lambda: "cryptography" if have_cryptography() else "openssl"
    )

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def create(self, specs: Sequence[CertSpec]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        make = _Cryptography() if self.backend == "cryptography" else _OpenSSL()
        make.ca(self.ca_cert, self.ca_key)
        for spec in specs:
            make.issue(spec, self)
        make.keypair(self.dir / "sa.key", self.dir / "sa.pub")


def _split_sans(sans: Sequence[str]) -> tuple[list[str], list[str]]:
    ips, dns = [], []
    for s in sans:
        try:
            ipaddress.ip_address(s)
            ips.append(s)
        except ValueError:
            dns.append(s)
    return ips, dns


class _Cryptography:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._ec = ec
        self._now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def _new_key(self) -> Any:
        return self._ec.generate_private_key(self._ec.SECP256R1())

    def _write_key(self, key: Any, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization as ser

        pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
        path.write_bytes(pem)
        path.chmod(0o600)

    def ca(self, cert_path: Path, key_path: Path) -> None:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        key = self._new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chaoslab-local-ca")])
        b = self._builder(name, name, key.public_key())
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        b = b.add_extension(_usage(cert_sign=True), critical=True)
        self._ca_key, self._ca_name = key, name
        self._write(b, cert_path)
        self._write_key(key, key_path)

    def _builder(self, subject: Any, issuer: Any, public_key: Any) -> Any:
        from cryptography import x509

        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(self._now + VALIDITY)
        )

    def _write(self, builder: Any, path: Path) -> None:
        from cryptography.hazmat.primitives import hashes, serialization

        cert = builder.sign(self._ca_key, hashes.SHA256())
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, spec: CertSpec, pki: Pki) -> None:
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = self._new_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.cn))
        b = self._builder(x509.Name(attrs), self._ca_name, key.public_key())
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(_usage(cert_sign=False), critical=True)
        eku = [ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else []
        eku += [ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else []
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if spec.sans:
            ips, dns = _split_sans(spec.sans)
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        self._write(b, pki.cert(spec.name))
        self._write_key(key, pki.key(spec.name))

    def keypair(self, key_path: Path, pub_path: Path) -> None:
        from cryptography.hazmat.primitives import serialization as ser

        key = self._new_key()
        self._write_key(key, key_path)
        pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        pub_path.write_bytes(pub)


def _usage(*, cert_sign: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


class _OpenSSL:
    def _run(self, *args: str) -> None:
        try:
            done = subprocess.run(["openssl", *args], capture_output=True, text=True)
        except FileNotFoundError:
            raise ClusterError(
                "neither the cryptography package nor openssl is installed"
            ) from None
        if done.returncode != 0:
            raise ClusterError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    def _key(self, path: Path) -> None:
        self._run(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
        )
        path.chmod(0o600)

    def ca(self, cert_path: Path, key_path: Path) -> None:
        self._key(key_path)
        self._ca = (cert_path, key_path)
        self._run(
            "req",
            "-x509",
            "-new",
            "-key",
            str(key_path),
            "-subj",
            "/CN=chaoslab-local-ca",
            "-days",
            str(VALIDITY.days),
            "-sha256",
            "-out",
            str(cert_path),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        )

    def issue(self, spec: CertSpec, pki: Pki) -> None:
        key, cert = pki.key(spec.name), pki.cert(spec.name)
        self._key(key)
        subj = "".join(f"/O={o}" for o in spec.orgs) + f"/CN={spec.cn}"
        eku = ",".join(
            (["serverAuth"] if spec.server else []) + (["clientAuth"] if spec.client else [])
        )
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={eku}",
        ]
        if spec.sans:
            ips, dns = _split_sans(spec.sans)
            ext.append(
                "subjectAltName=" + ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
            )
        with tempfile.TemporaryDirectory() as tmp:
            csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            extfile.write_text("\n".join(ext) + "\n")
            self._run("req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
            self._run(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(self._ca[0]),
                "-CAkey",
                str(self._ca[1]),
                "-CAcreateserial",
                "-days",
                str(VALIDITY.days),
                "-sha256",
                "-extfile",
                str(extfile),
                "-out",
                str(cert),
            )

    def keypair(self, key_path: Path, pub_path: Path) -> None:
        self._key(key_path)
        self._run("pkey", "-in", str(key_path), "-pubout", "-out", str(pub_path))
