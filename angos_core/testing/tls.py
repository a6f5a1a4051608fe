"""A throwaway PKI for TLS and mTLS tests (needs ``cryptography``, in ``angos-core[testing]``).

:class:`TestCA` is a root CA in a directory; it issues server certificates for loopback
(SANs ``127.0.0.1``, ``::1``, ``localhost``) and client certificates with a common name and
organizations, optionally already expired. Every certificate and key is a PEM file on disk,
as ``[server.tls]`` and the clients (curl, skopeo, docker's ``certs.d``) want them.

The ``tls_pki`` fixture (from :mod:`angos_core.testing.pytest_plugin`) is one of each: a CA,
a server certificate, a client ``alice`` (organization ``Platform``), an expired client, and
a client issued by a second, untrusted CA. Keys are ECDSA P-256: generated in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name(attributes)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key on disk."""

    cert_path: Path
    key_path: Path
    certificate: x509.Certificate

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def copy_to(self, cert_path: Path, key_path: Path) -> None:
        """Replace the files at ``cert_path``/``key_path`` with this pair, each atomically
        (written aside, then renamed over), as a certificate manager does."""
        for source, target in ((self.cert_path, cert_path), (self.key_path, key_path)):
            aside = target.with_name(target.name + ".new")
            shutil.copyfile(source, aside)
            aside.replace(target)


class TestCA:
    """A root CA whose certificate is ``cert_path``; what it issues lands in ``directory``."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path, name: str = "Angos Test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = _key()
        subject = _name(name, ["Angos tests"])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _DAY)
            .not_valid_after(_now() + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    def _issue(
        self,
        stem: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName],
        expired: bool,
    ) -> Issued:
        key = _key()
        not_after = _now() - _DAY if expired else _now() + 30 * _DAY
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_after - 60 * _DAY)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        self._count += 1
        cert_path = self.directory / f"{stem}-{self._count}.cert"
        key_path = self.directory / f"{stem}-{self._count}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return Issued(cert_path, key_path, certificate)

    def server(
        self,
        hosts: Sequence[str] = ("127.0.0.1", "::1", "localhost"),
        *,
        expired: bool = False,
    ) -> Issued:
        """A server certificate valid for ``hosts`` (IP addresses and DNS names)."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(
            "server", _name(hosts[0]), ExtendedKeyUsageOID.SERVER_AUTH, sans, expired
        )

    def client(
        self, common_name: str, organizations: Sequence[str] = (), *, expired: bool = False
    ) -> Issued:
        """A client certificate whose subject is ``CN=common_name, O=organizations...``."""
        return self._issue(
            f"client-{common_name}",
            _name(common_name, organizations),
            ExtendedKeyUsageOID.CLIENT_AUTH,
            (),
            expired,
        )


def client_context(ca: Path, client: Issued | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` only, presenting ``client`` if given."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert_path, client.key_path)
    return context


def cert_dir(directory: Path, ca: Path, client: Issued | None = None) -> Path:
    """A directory in the layout of docker's and containers' ``certs.d/<host>/``: ``ca.crt``
    and, for mTLS, ``client.cert`` and ``client.key`` (skopeo ``--cert-dir``)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca, directory / "ca.crt")
    if client is not None:
        shutil.copyfile(client.cert_path, directory / "client.cert")
        shutil.copyfile(client.key_path, directory / "client.key")
    return directory


@dataclass(frozen=True)
class TlsPki:
    """What the ``tls_pki`` fixture makes: see the module docstring."""

    ca: TestCA
    server: Issued
    client: Issued  # CN=alice, O=Platform
    expired_client: Issued  # CN=old, issued by ``ca``, expired yesterday
    other_ca: TestCA
    foreign_client: Issued  # CN=mallory, issued by ``other_ca``


def make_pki(directory: Path) -> TlsPki:
    ca = TestCA(directory / "ca")
    other = TestCA(directory / "other-ca", name="Another CA")
    return TlsPki(
        ca=ca,
        server=ca.server(),
        client=ca.client("alice", ["Platform"]),
        expired_client=ca.client("old", expired=True),
        other_ca=other,
        foreign_client=other.client("mallory"),
    )


@pytest.fixture
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    """A fresh test CA with a server certificate and clients (see :class:`TlsPki`)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


__all__ = ["Issued", "TestCA", "TlsPki", "cert_dir", "client_context", "make_pki", "tls_pki"]
