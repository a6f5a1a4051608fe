"""The keys an external token server signs with, as Distribution finds them.

Distribution's ``auth.token`` trusts the public keys of the certificates in
``rootcertbundle`` and the keys of a ``jwks`` file. A token names its key in one of two
ways, tried in this order:

- ``x5c``: the signing certificate chain, leaf first, which must lead to a certificate of
  the bundle; the leaf's key verifies the token;
- ``kid``: the key ID of a trusted key: a JWKS key's ``kid``; for a bundle certificate its
  RFC 7638 thumbprint (Distribution 3) or its libtrust key ID (Distribution 2, and the
  token servers written for it, such as docker_auth).

A token naming neither is tried against every trusted key (there are a handful).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: Certificates an ``x5c`` chain may hold: a leaf and a few intermediates, no more.
MAX_CHAIN = 5


class UntrustedKey(Exception):
    """The token's signing key is not one the configuration trusts. The message names why,
    never the token."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


def rfc7638_thumbprint(key: Any) -> str | None:
    """The JWK thumbprint (RFC 7638, SHA-256) of an RSA or EC public key, else None."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        members = {"e": _b64url(_int_bytes(numbers.e)), "kty": "RSA"}
        members["n"] = _b64url(_int_bytes(numbers.n))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        curve = curves.get(key.curve.name)
        if curve is None:
            return None
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        members = {
            "crv": curve,
            "kty": "EC",
            "x": _b64url(_int_bytes(point.x, size)),
            "y": _b64url(_int_bytes(point.y, size)),
        }
    else:
        return None
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def libtrust_key_id(key: Any) -> str:
    """The libtrust key ID: the SHA-256 of the DER public key, its first 240 bits in base32,
    in groups of four separated by ``:``."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TrustedKeys:
    """The certificates of a root bundle and the keys of a JWKS, by key ID."""

    roots: list[x509.Certificate] = field(default_factory=list)
    by_id: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_id)

    def add_certificate(self, cert: x509.Certificate) -> None:
        self.roots.append(cert)
        key = cert.public_key()
        thumbprint = rfc7638_thumbprint(key)
        if thumbprint:
            self.by_id[thumbprint] = key
        self.by_id[libtrust_key_id(key)] = key

    def add_jwk(self, key_id: str, key: Any) -> None:
        self.by_id[key_id] = key

    def candidates(self, header: dict[str, Any], now: datetime.datetime) -> list[Any]:
        """The keys that may have signed a token with JOSE ``header`` (raises
        :class:`UntrustedKey` when the header names a key this configuration does not
        trust)."""
        x5c = header.get("x5c")
        if x5c is not None:
            return [verify_chain(x5c, self.roots, now)]
        kid = header.get("kid")
        if kid is not None:
            if not isinstance(kid, str) or kid not in self.by_id:
                raise UntrustedKey("the token is signed by a key that is not trusted (kid)")
            return [self.by_id[kid]]
        # Keys appear under several IDs: try each once.
        unique: dict[int, Any] = {id(key): key for key in self.by_id.values()}
        return list(unique.values())


def load_certificate_bundle(path: Path, into: TrustedKeys) -> int:
    """Add every certificate of the PEM file at ``path``; the number added. Raises
    ``OSError`` (unreadable) or ``ValueError`` (not PEM certificates)."""
    data = path.read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    for cert in certs:
        into.add_certificate(cert)
    return len(certs)


def load_jwks_file(path: Path, into: TrustedKeys) -> int:
    """Add every signing key of the JWKS file at ``path``; the number added. Raises
    ``OSError`` or ``ValueError`` (not a JWKS, a key without ``kid``)."""
    try:
        document = json.loads(path.read_text())
        keys = jwt.PyJWKSet.from_dict(document).keys
    except (json.JSONDecodeError, jwt.PyJWTError) as exc:
        raise ValueError(f"not a JSON Web Key Set: {exc}") from exc
    added = 0
    for key in keys:
        if key.public_key_use not in (None, "sig"):
            continue
        if not key.key_id:
            raise ValueError("a key has no kid: tokens name their key by kid")
        into.add_jwk(key.key_id, key.key)
        added += 1
    return added


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(x5c: Any, roots: Sequence[x509.Certificate], now: datetime.datetime) -> PublicKey:
    """The leaf key of an ``x5c`` chain (base64 DER, leaf first) that leads to one of
    ``roots``: each certificate issued (signed) by the next or by a root, every one valid
    now, every issuer a CA. Raises :class:`UntrustedKey`."""
    if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN:
        raise UntrustedKey(f"the token's x5c is not a chain of 1 to {MAX_CHAIN} certificates")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
    except (TypeError, ValueError) as exc:
        raise UntrustedKey("the token's x5c holds something that is not a certificate") from exc
    if not all(_valid_at(cert, now) for cert in chain):
        raise UntrustedKey("a certificate of the token's x5c chain is expired or not yet valid")
    leaf = chain[0]
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise UntrustedKey("the token's signing certificate has an unsupported key type")
    current = leaf
    for depth in range(len(chain)):
        if current in roots:
            return key
        if any(_valid_at(r, now) and _is_ca(r) and _issued_by(current, r) for r in roots):
            return key
        if depth + 1 >= len(chain):
            break
        parent = chain[depth + 1]
        if not (_is_ca(parent) and _issued_by(current, parent)):
            raise UntrustedKey("the token's x5c chain is not a chain of issuers")
        current = parent
    raise UntrustedKey("the token's certificate chain does not lead to a trusted root")
