"""Tokens of an external token server are trusted by the keys of its certificate bundle or
JWKS file, for its service only, with exactly the grants they carry."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from angos_auth_token.config import ExternalTokenConfig
from angos_auth_token.external import ExternalTokens
from angos_auth_token.keys import libtrust_key_id, rfc7638_thumbprint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from angos_core.config import parse_table
from angos_core.errors import AuthenticationFailed, ConfigError
from angos_core.identity import Access, Credentials

NOW = datetime.datetime(2027, 1, 15, tzinfo=datetime.UTC)
ISSUER = "https://auth.example.com"
SERVICE = "registry.example.com"
PULL = Access("repository", "team/app", frozenset({"pull"}))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(
    key: Any,
    cn: str,
    *,
    issuer: tuple[Any, x509.Certificate] | None = None,
    ca: bool = False,
    days: int = 365,
) -> x509.Certificate:
    signer_key, signer_cert = issuer if issuer else (key, None)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(signer_cert.subject if signer_cert else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer_key, hashes.SHA256())
    )


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    base = {
        "iss": ISSUER,
        "sub": "carol",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "j1",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    base.update(changes)
    return base


def bearer(token: str) -> Credentials:
    return Credentials(client_ip="192.0.2.1", bearer=token)


def entry(
    tmp_path: Path, bundle: bytes | None = None, jwks: Any = None, **settings: Any
) -> ExternalTokenConfig:
    table: dict[str, Any] = {
        "realm": "https://auth.example.com/token",
        "service": SERVICE,
        "issuer": ISSUER,
    }
    if bundle is not None:
        (tmp_path / "bundle.pem").write_bytes(bundle)
        table["root_certificate_bundle"] = str(tmp_path / "bundle.pem")
    if jwks is not None:
        (tmp_path / "jwks.json").write_text(json.dumps(jwks))
        table["jwks"] = str(tmp_path / "jwks.json")
    table.update(settings)
    return parse_table(ExternalTokenConfig, table, "auth.token.corp")


async def opened(
    *configs: ExternalTokenConfig, names: tuple[str, ...] = ("corp",)
) -> ExternalTokens:
    tokens = ExternalTokens(dict(zip(names, configs, strict=True)), clock=NOW.timestamp)
    await tokens.open()
    return tokens


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def test_a_token_signed_by_the_bundle_key_with_a_libtrust_kid_is_trusted(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    tokens = await opened(entry(tmp_path, pem(certificate(rsa_key, "token-signer"))))
    kid = libtrust_key_id(rsa_key.public_key())
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": kid})
    identity = await tokens.authenticate(bearer(token))
    assert identity is not None
    assert (identity.id, identity.provider, identity.method) == ("carol", "token.corp", "bearer")
    assert identity.access == (PULL,)
    assert identity.claims["jti"] == "j1"
    assert (tokens.realm, tokens.service) == ("https://auth.example.com/token", SERVICE)


async def test_an_es256_token_with_an_rfc7638_kid_is_trusted(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    tokens = await opened(entry(tmp_path, pem(certificate(ec_key, "token-signer"))))
    kid = rfc7638_thumbprint(ec_key.public_key())
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": kid})
    identity = await tokens.authenticate(bearer(token))
    assert identity is not None and identity.access == (PULL,)


def test_the_rfc7638_thumbprint_is_the_rfc_example() -> None:
    # RFC 7638 section 3.1's key and thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    pad = "=" * (-len(n) % 4)
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + pad), "big")
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert rfc7638_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


async def test_a_token_carrying_an_x5c_chain_to_the_root_is_trusted(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = certificate(root_key, "token root", ca=True)
    intermediate = certificate(ec_key, "token intermediate", issuer=(root_key, root), ca=True)
    leaf = certificate(rsa_key, "token signer", issuer=(ec_key, intermediate))
    tokens = await opened(entry(tmp_path, pem(root)))
    chain = [der_b64(leaf), der_b64(intermediate)]
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"x5c": chain})
    assert await tokens.authenticate(bearer(token)) is not None

    # A chain to a root the bundle does not hold, or whose link is not a CA, is not trusted.
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_root = certificate(other_key, "token root", ca=True)
    stray = certificate(rsa_key, "token signer", issuer=(other_key, other_root))
    for bad in (
        [der_b64(stray)],
        [der_b64(leaf)],  # the intermediate left out
        [
            der_b64(leaf),
            der_b64(certificate(ec_key, "token intermediate", issuer=(root_key, root))),
        ],
        ["not base64!"],
    ):
        forged = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"x5c": bad})
        with pytest.raises(AuthenticationFailed):
            await tokens.authenticate(bearer(forged))


async def test_a_jwks_file_key_is_trusted_by_kid(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwk.update({"kid": "key-1", "use": "sig"})
    tokens = await opened(entry(tmp_path, jwks={"keys": [jwk]}))
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "key-1"})
    assert await tokens.authenticate(bearer(token)) is not None
    unknown = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "key-2"})
    with pytest.raises(AuthenticationFailed, match="not trusted"):
        await tokens.authenticate(bearer(unknown))


async def test_a_token_without_kid_is_tried_against_the_trusted_keys(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    bundle = pem(certificate(ec_key, "old signer"), certificate(rsa_key, "new signer"))
    tokens = await opened(entry(tmp_path, bundle))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert await tokens.authenticate(bearer(token)) is not None


async def test_forged_expired_foreign_and_confused_tokens_are_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    cert = certificate(rsa_key, "token-signer")
    tokens = await opened(entry(tmp_path, pem(cert)))
    kid = libtrust_key_id(rsa_key.public_key())
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expired = int(NOW.timestamp()) - 3600
    cases = {
        "another key": jwt.encode(claims(), attacker, algorithm="RS256", headers={"kid": kid}),
        "another service": jwt.encode(
            claims(aud="other.example.com"), rsa_key, algorithm="RS256", headers={"kid": kid}
        ),
        "expired": jwt.encode(
            claims(exp=expired), rsa_key, algorithm="RS256", headers={"kid": kid}
        ),
        "alg none": ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none", "kid": kid}, claims())
        )
        + ".",
        "not an allowed algorithm": jwt.encode(
            claims(), rsa_key, algorithm="RS512", headers={"kid": kid}
        ),
        "malformed access": jwt.encode(
            claims(access="repository:team/app:push"),
            rsa_key,
            algorithm="RS256",
            headers={"kid": kid},
        ),
    }
    # HS256 keyed with the public key: PyJWT refuses to sign it, so build it by hand.
    import hashlib
    import hmac

    head = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    mac = hmac.new(public_pem, head + b"." + body, hashlib.sha256).digest()
    cases["HS256 with the public key"] = (
        head + b"." + body + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")
    ).decode()
    for case, token in cases.items():
        with pytest.raises(AuthenticationFailed) as failed:
            await tokens.authenticate(bearer(token))
        assert token not in failed.value.message, case
    with pytest.raises(AuthenticationFailed, match="another service"):
        await tokens.authenticate(bearer(cases["another service"]))


async def test_tokens_of_other_issuers_and_other_credentials_are_not_its_kind(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    tokens = await opened(entry(tmp_path, pem(certificate(rsa_key, "token-signer"))))
    other = jwt.encode(
        claims(iss="https://token.actions.githubusercontent.com"), rsa_key, algorithm="RS256"
    )
    assert await tokens.authenticate(bearer(other)) is None
    assert await tokens.authenticate(bearer("opaque")) is None
    assert await tokens.authenticate(Credentials(client_ip="192.0.2.1", basic=("u", "p"))) is None


async def test_several_token_servers_are_told_apart_by_issuer(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = entry(tmp_path / "a", pem(certificate(rsa_key, "a")))
    second = entry(
        tmp_path / "b",
        pem(certificate(ec_key, "b")),
        issuer="https://b.example.com",
        realm="https://b.example.com/token",
    )
    tokens = await opened(first, second, names=("a", "b"))
    token = jwt.encode(claims(iss="https://b.example.com"), ec_key, algorithm="ES256")
    identity = await tokens.authenticate(bearer(token))
    assert identity is not None and identity.provider == "token.b"
    # Signed by a's key but claiming b: b's keys decide.
    forged = jwt.encode(claims(iss="https://b.example.com"), rsa_key, algorithm="RS256")
    with pytest.raises(AuthenticationFailed):
        await tokens.authenticate(bearer(forged))
    assert tokens.realm == "https://auth.example.com/token"  # the first entry's


def test_two_entries_with_one_issuer_are_refused(tmp_path: Path) -> None:
    config = entry(tmp_path, b"")
    with pytest.raises(ConfigError) as failed:
        ExternalTokens({"a": config, "b": config})
    assert failed.value.key == "auth.token.b.issuer"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"realm": "auth.example.com/token"}, "realm: must be an absolute http or https URL"),
        ({"issuer": ""}, "issuer:"),
        ({"allowed_algorithms": ["HS256"]}, "allowed_algorithms: ['HS256']"),
        ({"allowed_algorithms": ["none"]}, "allowed_algorithms"),
        ({"clock_skew_tolerance": -1}, "clock_skew_tolerance"),
    ],
)
def test_bad_entries_name_the_key(tmp_path: Path, settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as failed:
        entry(tmp_path, b"", **settings)
    assert failed.value.key == "auth.token.corp"
    assert fragment in failed.value.message


def test_an_entry_needs_a_bundle_or_a_jwks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"root_certificate_bundle .* or jwks"):
        entry(tmp_path)


@pytest.mark.parametrize(
    ("kind", "content", "fragment"),
    [
        ("bundle", b"not a certificate", "PEM certificate"),
        ("bundle", None, "cannot read"),
        ("jwks", {"keys": [{"kty": "EC"}]}, "JSON Web Key Set"),
        ("jwks", {"nokeys": []}, "JSON Web Key Set"),
    ],
)
async def test_unusable_key_files_are_config_errors_naming_the_key(
    tmp_path: Path, kind: str, content: Any, fragment: str
) -> None:
    if kind == "bundle":
        config = entry(tmp_path, content if content is not None else b"")
        if content is None:
            (tmp_path / "bundle.pem").unlink()
        key = "auth.token.corp.root_certificate_bundle"
    else:
        config = entry(tmp_path, jwks=content)
        key = "auth.token.corp.jwks"
    with pytest.raises(ConfigError) as failed:
        await opened(config)
    assert failed.value.key == key
    assert fragment in failed.value.message
