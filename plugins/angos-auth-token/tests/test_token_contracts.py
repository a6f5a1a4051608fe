"""Both authenticators pass the authenticator contract shipped in angos_core.testing."""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from angos_auth_token.config import ExternalTokenConfig, TokenServiceConfig
from angos_auth_token.external import ExternalTokens
from angos_auth_token.keys import libtrust_key_id
from angos_auth_token.service import TokenService
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from angos_core.identity import Access, Credentials, Identity
from angos_core.testing import AuthenticatorCase, AuthenticatorContract

SECRET = base64.b64encode(b"contract-secret-key-of-32-bytes!").decode()
OTHER = base64.b64encode(b"another-secret-key-of-32-bytes!!").decode()
PULL = Access("repository", "team/app", frozenset({"pull"}))
ALICE = Identity("alice", "alice", "identity", "basic")
IP = "192.0.2.1"


class TestTokenService(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        service = TokenService(TokenServiceConfig(secret_key=SECRET))
        await service.open()
        good = service.issue(ALICE, [PULL]).token
        bad = TokenService(TokenServiceConfig(secret_key=OTHER)).issue(ALICE, [PULL]).token
        foreign = jwt.encode({"iss": "https://issuer.example.com"}, "k" * 32, algorithm="HS256")
        yield AuthenticatorCase(
            service,
            good=Credentials(IP, bearer=good),
            bad=Credentials(IP, bearer=bad),
            foreign=Credentials(IP, bearer=foreign),
            identity_id="alice",
            secrets=(SECRET,),
        )
        await service.aclose()


def _self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class TestExternalTokens(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self, tmp_path: Path) -> AsyncIterator[AuthenticatorCase]:
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        bundle = tmp_path / "signer.pem"
        bundle.write_bytes(_self_signed(signer))
        config = ExternalTokenConfig(
            realm="https://auth.example.com/token",
            service="registry.example.com",
            issuer="https://auth.example.com",
            root_certificate_bundle=bundle,
        )
        tokens = ExternalTokens({"corp": config})
        await tokens.open()
        now = int(time.time())
        claims = {
            "iss": "https://auth.example.com",
            "sub": "carol",
            "aud": "registry.example.com",
            "exp": now + 300,
            "access": [],
        }
        kid = {"kid": libtrust_key_id(signer.public_key())}
        yield AuthenticatorCase(
            tokens,
            good=Credentials(IP, bearer=jwt.encode(claims, signer, "RS256", headers=kid)),
            bad=Credentials(IP, bearer=jwt.encode(claims, attacker, "RS256", headers=kid)),
            foreign=Credentials(IP, basic=("carol", "a-password-here")),
            identity_id="carol",
        )
        await tokens.aclose()
